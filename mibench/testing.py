"""A test kit for attacks and plugins: a toy target, toy data, a ready context, a cache check.

Everything here runs in seconds on a CPU and is deterministic. The module does not import
pytest, so it serves ``unittest`` as well; :func:`assert_loaded_from_cache` raises a plain
``AssertionError``, which both frameworks report as a failure. A plugin's test::

    import torch
    from mibench.testing import assert_loaded_from_cache, toy_context

    from my_plugin import MyAttack

    def test_my_attack(tmp_path):
        ctx = toy_context(access=MyAttack.spec.access, cache=tmp_path)
        MyAttack(MyAttack.Config.resolve("smoke")).prepare(ctx)
        with assert_loaded_from_cache(ctx.cache):     # a cached prior: the second prepare loads
            attack = MyAttack(MyAttack.Config.resolve("smoke"))
            attack.prepare(ctx)
        images = attack.invert(ctx.target, torch.tensor([0, 1, 2]), ctx)
        assert images.shape == (3, 3, 16, 16)

Under ``unittest``, pass ``cache=`` the path of a ``tempfile.TemporaryDirectory()``.

The toy world: :class:`ColourTarget` knows three identities, red, green and blue (class *c* is
the colour prototype *c*), so "did the attack find the identity" is a question about the mean
colour of its images. :func:`colour_aux` gives solid-colour auxiliary images, :func:`noise_aux`
random-pixel ones, :func:`toy_split` labelled identities for training targets.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from mibench.access import QueryLedger, view_for
from mibench.attack import AttackContext
from mibench.cache import MARKER, Cache
from mibench.target import Target
from mibench.world import Split, World

PROTOTYPES = ((0.9, 0.1, 0.1), (0.1, 0.9, 0.1), (0.1, 0.1, 0.9))
IDENTITY_OFFSET = 100     # aux identities are disjoint from the target's private ones


class ColourTarget(Target):
    """Class c is the colour prototype c: logits = −10·‖mean colour − prototype‖².

    Three classes (red, green, blue), 16 px input (larger images are accepted: the feature is
    the mean colour), identity normalisation. ``ColourTarget()(images)[0]`` are the logits.
    """

    def __init__(self) -> None:
        super().__init__(num_classes=3, resolution=16, feature_dim=3, mean=(0, 0, 0),
                         std=(1, 1, 1))
        self.register_buffer("prototypes", torch.tensor(PROTOTYPES))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return -10 * torch.cdist(features, self.prototypes).pow(2)


def colour_images(n: int, *, resolution: int = 16, seed: int = 0,
                  power: float = 1.0) -> torch.Tensor:
    """``n`` uint8 images of one uniform random colour each (``power`` > 1 saturates them)."""
    colours = torch.rand(n, 3, generator=torch.Generator().manual_seed(seed))
    if power != 1:
        colours = colours.pow(power)
    images = colours[:, :, None, None].expand(n, 3, resolution, resolution) * 255
    return images.to(torch.uint8).contiguous()


def colour_aux(n: int = 48, *, resolution: int = 16, seed: int = 0,
               power: float = 1.0) -> Split:
    """An auxiliary split of :func:`colour_images`, one identity per image."""
    labels = torch.arange(n)
    return Split("aux", colour_images(n, resolution=resolution, seed=seed, power=power),
                 labels, labels + IDENTITY_OFFSET)


def noise_aux(n: int = 48, *, identities: int = 6, resolution: int = 32, seed: int = 0) -> Split:
    """An auxiliary split of uniform random pixels, ``identities`` identities in turn."""
    gen = torch.Generator().manual_seed(seed)
    images = (torch.rand(n, 3, resolution, resolution, generator=gen) * 255).to(torch.uint8)
    labels = torch.arange(n) % identities
    return Split("aux", images, labels, labels + IDENTITY_OFFSET)


def toy_split(num_classes: int, per_class: int, *, seed: int = 0, identity_offset: int = 0,
              noise: float = 0.5, size: int = 32, name: str = "toy") -> Split:
    """Labelled identities for training a target: each identity is a fixed smooth colour
    pattern (seeded by ``identity_offset``), each image adds pixel noise (seeded by ``seed``).

    >>> train, test = toy_split(8, 12), toy_split(8, 6, seed=1)   # same identities
    """
    patterns = torch.rand(num_classes, 3, 4, 4,
                          generator=torch.Generator().manual_seed(1000 + identity_offset))
    patterns = F.interpolate(patterns, size=(size, size), mode="bilinear", align_corners=False)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    noisy = patterns[labels] + noise * torch.randn(len(labels), 3, size, size,
                                                   generator=torch.Generator().manual_seed(seed))
    images = (noisy.clamp(0, 1) * 255).round().to(torch.uint8)
    return Split(name=name, images=images, labels=labels, identities=labels + identity_offset)


def toy_world() -> World:
    """A 4-identity world of :func:`toy_split` images (private-train 8 per identity,
    private-test 3) with an 8-identity public split, for training toy targets."""
    splits = [toy_split(4, 8, seed=0, noise=0.3, name="private-train"),
              toy_split(4, 3, seed=1, noise=0.3, name="private-test"),
              toy_split(8, 6, seed=2, identity_offset=100, noise=0.3, name="public")]
    return World(name="toy", fingerprint="toy-0001", splits={s.name: s for s in splits})


def toy_context(access: str = "whitebox", *, cache: Cache | str | Path | None = None,
                aux: Split | None = None, target: Target | None = None,
                fingerprint: str = "toy", aux_fingerprint: str = "",
                seed: int = 0) -> AttackContext:
    """An :class:`AttackContext` as the harness builds it, on the CPU, progress bars off.

    ``target`` (default :class:`ColourTarget`) is wrapped in the view that ``access``
    (``whitebox``, ``scores`` or ``labels``) allows, counting into ``ctx.ledger``; ``aux``
    defaults to :func:`noise_aux`. ``cache`` is a :class:`Cache` or a directory (default: a
    fresh temporary directory, left to the system to clean). ``fingerprint`` keys the
    context's cached priors; give a different one to contexts whose priors must not be shared.

    >>> ctx = toy_context(access="scores", aux=colour_aux())
    >>> ctx.target.probs(torch.rand(2, 3, 16, 16)).shape
    torch.Size([2, 3])
    """
    if not isinstance(cache, Cache):
        cache = Cache(cache if cache is not None else tempfile.mkdtemp(prefix="mibench-test-"))
    ledger = QueryLedger()
    view = view_for(access, target if target is not None else ColourTarget(), ledger)
    return AttackContext(aux=aux if aux is not None else noise_aux(), cache=cache,
                         device=torch.device("cpu"), seed=seed, ledger=ledger, target=view,
                         data_fingerprint=fingerprint, aux_fingerprint=aux_fingerprint,
                         show_progress=False)


@contextmanager
def assert_loaded_from_cache(cache: Cache, component: str | None = None) -> Iterator[None]:
    """Fail if the block trains (builds) a cache entry instead of loading it.

    Priors, targets and worlds are all stored through :meth:`Cache.build`. Inside the block, a
    build of a missing entry raises ``AssertionError`` before its builder runs; at its end,
    the block must have loaded at least one entry and no new entry may have appeared on disk
    (which also catches writes through another :class:`Cache` on the same directory).
    ``component`` (e.g. ``"prior-gmi"``) restricts all three checks to that component.

    >>> with assert_loaded_from_cache(ctx.cache, "prior-gmi"):   # doctest: +SKIP
    ...     GMI(config).prepare(ctx)
    """
    loaded: list[str] = []
    outer = vars(cache).get("build")   # an enclosing guard, restored on exit
    build = cache.build

    def refuse(name: str, key: str) -> Callable[[Path], None]:
        def builder(path: Path) -> None:
            raise AssertionError(f"cache entry {name}/{key} was trained, not loaded from "
                                 f"{cache.root}")
        return builder

    def guarded(name: str, key: str, builder: Callable[[Path], None]) -> Path:
        if component is not None and name != component:
            return build(name, key, builder)
        path = build(name, key, refuse(name, key))
        loaded.append(name)
        return path

    before = _entries(cache.root, component)
    cache.build = guarded               # type: ignore[method-assign]
    try:
        yield
    finally:
        if outer is None:
            del cache.build
        else:
            cache.build = outer         # type: ignore[method-assign]
    written = sorted(_entries(cache.root, component) - before)
    if written:
        raise AssertionError(f"cache entries written under {cache.root}: {', '.join(written)}; "
                             f"expected them to be loaded")
    if not loaded:
        what = f"{component!r}" if component else "any component"
        raise AssertionError(f"nothing was loaded from the cache for {what} under {cache.root}")


def _entries(root: Path, component: str | None) -> set[str]:
    """``component/key`` of every complete entry under ``root`` (of one component if given)."""
    pattern = f"{component}/*/{MARKER}" if component else f"*/*/{MARKER}"
    return {f"{m.parent.parent.name}/{m.parent.name}" for m in root.glob(pattern)}
