"""Device handling without a GPU: an emulated accelerator that enforces CUDA's mixing rules.

The ``meta`` device does not reproduce CUDA's errors (indexing a CPU tensor with a meta index
returns garbage instead of raising, and meta tensors have no values to compute with), so
:class:`EmulatedAccelerator` stands in: tensors "on" the accelerator are ordinary CPU tensors
tagged as such, ``torch.device("meta")`` names the accelerator, and every torch call that mixes
accelerator tensors with non-scalar CPU tensors raises the error CUDA raises (issue 17: UAMI
indexed its CPU candidate hits with the harness's CUDA labels). On a CUDA machine the
device-parametrised tests run on the real device too.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map
from test_fgmia import ColourHead
from test_metrics import lpips_case

from mibench.access import QueryLedger, view_for
from mibench.attack import AttackContext
from mibench.attacks.uami import UAMI, UAMIConfig
from mibench.metrics import MetricUnavailable, perceptual
from mibench.metrics.context import EvalContext
from mibench.registry import ATTACKS
from mibench.selection import best_per_identity, top_k_per_identity
from mibench.targets.models import class_templates
from mibench.testing import ColourTarget
from mibench.world import Split

ACCELERATOR = torch.device("meta")
CPU = torch.device("cpu")
TAG = "_on_emulated_accelerator"
BASE = torch._C.TensorBase
DEVICE, DATA, GRAD = (BASE.__dict__[name] for name in ("device", "data", "grad"))
# Calls that move data between devices: their result is where they were asked to put it.
TRANSFERS = {BASE.to, BASE.cpu, BASE.copy_, BASE.type_as}
# Module.to's argument parsing and tensor-type check: untouched, unchecked.
PASS_THROUGH = {torch._C._nn._parse_to, torch._has_compatible_shallow_copy_type}
# A device tensor may be indexed with CPU indices; a CPU tensor may not be with device ones.
INDEXING = {BASE.__getitem__, BASE.__setitem__}


def on_accelerator(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and getattr(value, TAG, False)


def _as_device(value: Any) -> torch.device | None:
    if isinstance(value, torch.device):
        return value
    if isinstance(value, str) and value.split(":")[0] in ("cpu", "meta", "cuda"):
        return torch.device(value)
    return None


class EmulatedAccelerator(TorchFunctionMode):
    """CPU tensors tagged as living on ``ACCELERATOR``, with CUDA's cross-device errors."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in PASS_THROUGH:
            return func(*args, **kwargs)
        attribute = getattr(func, "__self__", None)
        if attribute is DEVICE:                                      # tensor.device
            return ACCELERATOR if on_accelerator(args[0]) else CPU
        if attribute is DATA and func.__name__ == "__set__":        # Module.to sets param.data
            func(*args)
            setattr(args[0], TAG, on_accelerator(args[1]))
            return None
        if attribute is GRAD and func.__name__ == "__get__":        # autograd's grads: untagged
            grad = func(*args)
            if grad is not None:
                setattr(grad, TAG, on_accelerator(args[0]))
            return grad
        requested: list[torch.device] = []

        def to_cpu(value: Any) -> Any:
            device = _as_device(value)
            if device is None:
                return value
            requested.append(device)
            return CPU

        args, kwargs = tree_map(to_cpu, (args, kwargs))
        if func is BASE.numpy and on_accelerator(args[0]):
            raise TypeError("can't convert cuda:0 device type tensor to numpy")
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        if func not in TRANSFERS:
            self._check_mixing(func, tensors)
        result = func(*args, **kwargs)
        if func in TRANSFERS:
            if requested:
                where = requested[-1] == ACCELERATOR
            elif func is BASE.cpu:
                where = False
            else:                                   # .to(tensor), .type_as(tensor), copy_
                where = on_accelerator(tensors[0 if func is BASE.copy_ else -1])
            if func is not BASE.copy_ and result is tensors[0]:
                result = result.view_as(result)    # a no-op move: a new tensor to tag
        else:
            where = any(map(on_accelerator, tensors)) or ACCELERATOR in requested
        for out in tree_flatten(result)[0]:
            if isinstance(out, torch.Tensor):
                setattr(out, TAG, where)
        return result

    @staticmethod
    def _check_mixing(func, tensors: list[torch.Tensor]) -> None:
        device = [t for t in tensors if on_accelerator(t)]
        host = [t for t in tensors if not on_accelerator(t) and t.dim() > 0]
        if not device or not host:
            return
        if func in INDEXING:
            if on_accelerator(tensors[0]):
                return
            raise RuntimeError("indices should be either on cpu or on the same device as the "
                               "indexed tensor (cpu)")
        raise RuntimeError(f"Expected all tensors to be on the same device, but found at least "
                           f"two devices, cuda:0 and cpu! ({getattr(func, '__name__', func)})")


DEVICES = ["emulated", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))]


@pytest.fixture(params=DEVICES)
def device(request):
    """The device under test, with the emulator active for the emulated accelerator."""
    if request.param == "cuda":
        yield torch.device("cuda")
        return
    with EmulatedAccelerator():
        yield ACCELERATOR


def test_the_emulator_raises_where_cuda_does():
    with EmulatedAccelerator():
        host = torch.zeros(3)
        index = torch.tensor([0, 2]).to(ACCELERATOR)
        assert index.device == ACCELERATOR and index.cpu().device == CPU
        with pytest.raises(RuntimeError, match="indices should be either on cpu"):
            host[index]
        with pytest.raises(RuntimeError, match="indices should be either on cpu"):
            host[torch.zeros(3, device=ACCELERATOR) == 0] = 1.0
        with pytest.raises(RuntimeError, match="same device"):
            host + torch.ones(3, device=ACCELERATOR)
        with pytest.raises(TypeError, match="numpy"):
            index.numpy()
        moved = host.to(index.device)
        assert torch.equal(moved[torch.tensor([1])].cpu(), torch.zeros(1))   # CPU indices: fine
        assert (moved + torch.tensor(1.0)).device == ACCELERATOR       # so are CPU scalars
        assert torch.equal(host[index.to(host.device)], torch.zeros(2))


def solid(colours: torch.Tensor) -> torch.Tensor:
    return colours[:, :, None, None].expand(len(colours), 3, 16, 16).contiguous()


class DeviceContext(AttackContext):
    """An attack context on ``device`` whose generator stays on the CPU off CUDA (the emulated
    accelerator's generator would be a meta one, which torch refuses)."""

    def generator(self, offset: int = 0) -> torch.Generator:
        gen = torch.Generator(device=self.device if self.device.type == "cuda" else "cpu")
        gen.manual_seed(self.seed + offset)
        return gen


def test_uami_filter_takes_labels_on_the_attack_device(cache, device):
    """The harness hands ``invert`` its labels on the run device; UAMI's filter ranks CPU
    hits with them (the issue-17 crash: "indices should be either on cpu or on the same
    device as the indexed tensor")."""
    n = 12
    aux = Split("aux", torch.zeros(n, 3, 16, 16, dtype=torch.uint8), torch.arange(n),
                torch.arange(n) + 100)
    ledger = QueryLedger()
    ctx = DeviceContext(aux=aux, cache=cache, device=device, seed=0, ledger=ledger,
                        target=view_for(UAMI.spec.access, ColourTarget(), ledger),
                        data_fingerprint="none", aux_fingerprint="none", show_progress=False)
    labels = torch.tensor([0, 0, 1, 1, 2])
    attack = UAMI(UAMIConfig.resolve("smoke", {"candidates": 3}))
    prototypes = ColourTarget().prototypes

    def sample(tiled: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        assert tiled.device == device
        draw = torch.arange(len(tiled), device=tiled.device) // len(labels)
        wrong = (tiled + (draw == 0).long()) % 3          # draw 0 misses, draws 1, 2 hit
        return solid(prototypes.to(tiled.device)[wrong] * (0.9 + 0.05 * draw[:, None]))

    attack.prior = type("Prior", (), {"sample": staticmethod(sample)})()
    images = attack.invert(ctx.target, labels.to(device), ctx)
    assert images.device == CPU
    assert torch.equal(ColourTarget()(images)[0].argmax(1), labels)
    assert torch.allclose(images[:, :, 0, 0].max(1).values, torch.full((5,), 0.9 * 0.95))


def test_class_templates_are_built_where_the_features_are(device):
    features = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 3.0]])
    templates = class_templates(features.to(device), torch.tensor([0, 1, 1]), 2)
    assert templates.device == device
    assert torch.equal(templates.cpu(), torch.eye(2))


def test_selection_takes_labels_and_scores_from_any_device(device):
    """``best_per_identity`` / ``top_k_per_identity`` index CPU tensors with masks of the
    labels: labels on the attack's device must not break them."""
    labels = torch.tensor([1, 0, 1, 0])
    scores = torch.tensor([0.1, 0.9, 0.7, 0.2])
    for s, y in ((scores, labels.to(device)), (scores.to(device), labels)):
        assert best_per_identity(s, y).tolist() == [2, 1]
    candidates = torch.tensor([[0.1, 0.9], [0.8, 0.3], [0.5, 0.6]])
    assert top_k_per_identity(candidates, labels.to(device)).tolist() == [0, 1, 2, 2]


FEW_STEPS = ("train_steps", "ae_steps", "sampler_steps", "ft_epochs")   # 2 each: the device
# paths are the same, and the emulator's per-call checks make long loops slow


@pytest.mark.parametrize("name", ATTACKS.names())   # 0.5-4.4 s each on the emulator
def test_every_attack_runs_with_its_models_and_labels_on_the_device(name, cache, device):
    """``prepare``, ``invert`` and ``select`` at smoke size (two steps of each diffusion
    loop) as the harness calls them: target and priors on the device, ``invert``'s labels on
    it, ``select``'s on the CPU."""
    attack_cls = ATTACKS.get(name)
    gen = torch.Generator().manual_seed(0)
    aux = Split("aux", (torch.rand(48, 3, 32, 32, generator=gen) * 255).to(torch.uint8),
                torch.arange(48) % 6, torch.arange(48) % 6 + 100)
    ledger = QueryLedger()
    ctx = DeviceContext(aux=aux, cache=cache, device=device, seed=0, ledger=ledger,
                        target=view_for(attack_cls.spec.access, ColourHead().to(device), ledger),
                        data_fingerprint="toy", aux_fingerprint="toy", show_progress=False)
    steps = {f.name: 2 for f in fields(attack_cls.Config) if f.name in FEW_STEPS}
    attack = attack_cls(attack_cls.Config.resolve("smoke", steps))
    attack.prepare(ctx)
    labels = torch.tensor([0, 0, 1, 2])
    with ledger.scope(labels):
        images = attack.invert(ctx.target, labels.to(device), ctx).detach().float().cpu()
        selected = attack.select(ctx.target, images, labels, ctx).cpu()
    assert images.shape[0] == 4 and 0 <= images.min() and images.max() <= 1
    assert sorted(labels[selected].tolist()) == [0, 1, 2]


def test_streamed_lpips_runs_where_the_models_are(device):
    """Generated images on the CPU, evaluation model and LPIPS network on the device: the
    value recorded on the CPU (test_metrics; CUDA's TF32 convolutions may move it by ~1e-4)."""
    try:
        net = perceptual.load_st_lpips(device)
    except MetricUnavailable as why:
        pytest.skip(str(why))
    ctx, picked = lpips_case()
    ctx.private.eval_model.to(device)
    ctx = EvalContext(ctx.generated, ctx.labels, target=ctx.target, private=ctx.private)
    value = perceptual.nearest_perceptual_distance(ctx, net, "st_lpips")
    selected = perceptual.nearest_perceptual_distance(ctx.subset(picked), net, "st_lpips")
    assert (value, selected) == pytest.approx((0.18988308397175294, 0.1720260634797993),
                                              rel=1e-3)
