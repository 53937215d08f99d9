"""Does ``torch.compile`` pay for the diffusion UNets? (issue 17, Build 4; ``run.compile``).

Builds FGMIA's denoiser at a preset's sizes (``attacks/fgmia.py``: the UNet Diff-MI, UAMI and
FGMIA all train and sample through ``priors/diffusion.py``), then times, on one device and in
one process, training steps (forward + backward + AdamW) and sampling steps (no-grad forward)
of the eager module and of its ``torch.compile`` wrapper, alternating eager and compiled
rounds so that load on a shared machine hits both alike. Prints the one-off compile time and
the steady-state seconds per step of each, and the speed-up as a ratio within this run.

    python benchmarks/compile_speed.py --preset mini --batch 32 --steps 10 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from mibench.attacks.fgmia import FGMIAConfig
from mibench.attacks.priors.diffusion import ConditionalDenoiser


def now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def build(preset: str, device: torch.device) -> tuple[ConditionalDenoiser, int, int]:
    """FGMIA's denoiser at ``preset``'s space (pixels, or the shared autoencoder's 4-channel
    latents), resolution and UNet sizes."""
    cfg = FGMIAConfig.resolve(preset)
    latent = cfg.space == "latent"
    size = cfg.resolution // cfg.latent_downsample if latent else cfg.resolution
    channels = 4 if latent else 3
    model = ConditionalDenoiser(sample_size=size, channels=channels, condition_dim=512,
                                block_channels=cfg.block_channels, attention=cfg.attention,
                                layers_per_block=cfg.layers_per_block, token_dim=cfg.token_dim,
                                head_dim=cfg.head_dim)
    return model.to(device), size, channels


def timed(step, steps: int, device: torch.device) -> float:
    """Seconds per call of ``step`` over ``steps`` calls."""
    start = now(device)
    for _ in range(steps):
        step()
    return (now(device) - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mini", choices=("smoke", "mini", "paper"))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating eager/compiled rounds")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model, size, channels = build(args.preset, device)
    x = torch.randn(args.batch, channels, size, size, device=device)
    t = torch.randint(1000, (args.batch,), device=device)
    context = torch.randn(args.batch, model.tokens, model.token_dim, device=device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
    compiled = torch.compile(model)

    def train(network):
        def step() -> None:
            optimiser.zero_grad(set_to_none=True)
            F.mse_loss(network(x, t, context), x).backward()
            optimiser.step()
        return step

    def sample(network):
        def step() -> None:
            with torch.no_grad():
                network(x, t, context)
        return step

    compile_s = {}
    for name, make in (("train", train), ("sample", sample)):
        start = now(device)
        make(compiled)()                     # first call: tracing and code generation
        compile_s[name] = now(device) - start
    rows = {(kind, mode): [] for kind in ("train", "sample") for mode in ("eager", "compiled")}
    for _ in range(args.rounds):
        for kind, make in (("train", train), ("sample", sample)):
            for mode, network in (("eager", model), ("compiled", compiled)):
                rows[kind, mode].append(timed(make(network), args.steps, device))
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"FGMIA denoiser at {args.preset}: {params:.1f} M parameters, batch {args.batch} × "
          f"{channels}×{size}×{size}, device {device}, {torch.get_num_threads()} threads")
    print("| loop | compile (s, once) | eager s/step | compiled s/step | speed-up |")
    print("|---|---|---|---|---|")
    for kind in ("train", "sample"):
        eager = statistics.median(rows[kind, "eager"])
        fast = statistics.median(rows[kind, "compiled"])
        print(f"| {kind} | {compile_s[kind]:.1f} | {eager:.4f} | {fast:.4f} | "
              f"{eager / fast:.2f}× |")


if __name__ == "__main__":
    main()
