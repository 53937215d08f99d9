"""How hard is the synthetic world? A small CNN must recognise identities; raw pixels must not.

Builds the world of a preset (default ``mini``), trains a small seeded CNN on ``private-train``
(CPU) and reports its ``private-test`` accuracy next to the 1-nearest-neighbour accuracy on raw
pixels (private-test vs private-train). At ``mini`` we require CNN >= 90 % (identity is
learnable) and pixel-NN <= 50 % (identity is not a pixel template).

    .venv/bin/python benchmarks/world_difficulty.py [--preset mini] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn

from mibench.cache import Cache
from mibench.datasets.synth import WorldConfig, build_world
from mibench.world import World


def small_cnn(num_classes: int) -> nn.Sequential:
    """Four conv blocks (BN, ReLU, max-pool), global average pooling, linear head."""
    layers: list[nn.Module] = []
    channels = (3, 32, 64, 96, 128)
    for c_in, c_out in zip(channels, channels[1:]):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                   nn.ReLU(inplace=True), nn.MaxPool2d(2)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                         nn.Linear(channels[-1], num_classes))


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random shift of up to 1/16 of the side."""
    n, _, side, _ = images.shape
    flip = torch.rand(n, generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    pad = max(1, side // 16)
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    dx, dy = torch.randint(0, 2 * pad + 1, (2,), generator=generator).tolist()
    return padded[:, :, dy:dy + side, dx:dx + side]


def cnn_accuracy(world: World, epochs: int, seed: int, side: int) -> float:
    """Train on private-train (resized to ``side`` px), return top-1 accuracy on private-test."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    train, test = world.split("private-train"), world.split("private-test")
    side = min(world.resolution, side)
    x_train = F.interpolate(train.float_images(), size=side, mode="bilinear", antialias=True)
    x_test = F.interpolate(test.float_images(), size=side, mode="bilinear", antialias=True)
    model = small_cnn(train.num_classes)
    steps_per_epoch = (len(train) + 63) // 64
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3,
                                                   total_steps=epochs * steps_per_epoch)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(train), 64):
            batch = order[start:start + 64]
            loss = F.cross_entropy(model(augment(x_train[batch], generator)), train.labels[batch],
                                   label_smoothing=0.1)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        predictions = torch.cat([model(x_test[s:s + 256]).argmax(1)
                                 for s in range(0, len(test), 256)])
    return (predictions == test.labels).float().mean().item()


def pixel_nn_accuracy(world: World) -> float:
    """1-nearest-neighbour (L2 on raw pixels) accuracy of private-test against private-train."""
    train, test = world.split("private-train"), world.split("private-test")
    gallery = train.float_images().flatten(1)
    queries = test.float_images().flatten(1)
    nearest = torch.cdist(queries, gallery).argmin(dim=1)
    return (train.labels[nearest] == test.labels).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mini", choices=("smoke", "mini", "paper"))
    parser.add_argument("--cache-dir", default=None,
                        help="world cache (default: a fresh temporary directory, so the build "
                             "time is measured)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--side", type=int, default=32, help="CNN input side (pixels)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        cache = Cache(args.cache_dir or scratch)
        started = time.perf_counter()
        world = build_world(WorldConfig.resolve(args.preset), cache, progress=False)
        built = time.perf_counter() - started
        print(f"world: synth/{args.preset} {world.fingerprint}, "
              f"{sum(len(s) for s in world.splits.values())} images at {world.resolution} px, "
              f"build {built:.1f} s on {torch.get_num_threads()} threads")
        nn_acc = pixel_nn_accuracy(world)
        print(f"pixel 1-NN accuracy (private-test vs private-train): {nn_acc:.1%}")
        started = time.perf_counter()
        cnn_acc = cnn_accuracy(world, args.epochs, args.seed, args.side)
        print(f"small CNN private-test accuracy: {cnn_acc:.1%} "
              f"({args.side} px input, {args.epochs} epochs, "
              f"{time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
