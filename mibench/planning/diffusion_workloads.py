"""Workloads of the diffusion attacks: Diff-MI and UAMI (class-conditional CFG prior, per
target) and FGMIA with its ablations (feature-conditioned prior, per target).

They mirror ``priors/class_diffusion.py``, ``priors/diffusion.py`` (``train_denoiser``,
``ddim_sample``, ``ddim_denoise``), ``diffmi.py``, ``uami.py`` and ``fgmia.py``; see
:mod:`.workloads`. In latent space (CPU presets) the shared autoencoder's training is counted
but its encode/decode inside the loops is not (it is a few convolutions at the latent size).
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from mibench.attacks.priors.autoencoder import ConvAutoencoder
from mibench.attacks.priors.class_diffusion import FINETUNED, ClassDenoiser
from mibench.attacks.priors.diffusion import TRAIN_TIMESTEPS, ConditionalDenoiser
from mibench.config import Config
from mibench.planning.count import Pass, StepCost, on_meta, step_cost
from mibench.planning.workloads import (ADAM_SLOTS, Phase, Setting, batches, combine,
                                        frozen_key, scaled, sequential, target_network,
                                        target_pass, target_queries, whole_config,
                                        workload)

UNET_FIELDS = ("block_channels", "attention", "layers_per_block", "token_dim", "head_dim")
CLASS_UNET_FIELDS = ("block_channels", "attention", "layers_per_block", "num_heads")


@lru_cache(maxsize=None)
def _denoiser(shape: tuple, condition_dim: int, unet: tuple) -> nn.Module:
    """FGMIA's cross-attention UNet, or the ADM class UNet (``num_heads`` in ``unet``)."""
    sample_size, channels = shape
    sizes = dict(unet)
    if "num_heads" in sizes:
        return on_meta(lambda: ClassDenoiser(sample_size=sample_size, channels=channels,
                                             num_classes=condition_dim, **sizes))
    return on_meta(lambda: ConditionalDenoiser(sample_size=sample_size, channels=channels,
                                               condition_dim=condition_dim, **sizes))


def _space(cfg: Config) -> tuple[int, int]:
    """(side, channels) the denoiser works at: pixels, or the shared autoencoder's latents."""
    if cfg.space == "latent":
        return cfg.resolution // cfg.latent_downsample, cfg.latent_channels
    return cfg.resolution, 3


def _inputs(model: nn.Module, batch: int, grad: bool = False) -> tuple:
    x = torch.randn(batch, model.channels, model.sample_size, model.sample_size,
                    requires_grad=grad)
    if isinstance(model, ClassDenoiser):
        context = torch.randint(model.num_classes + 1, (batch,))
    else:
        context = torch.randn(batch, model.tokens, model.token_dim)
    return x, torch.randint(TRAIN_TIMESTEPS, (batch,)), context


@lru_cache(maxsize=None)
def _train_step(shape: tuple, condition_dim: int, unet: tuple, batch: int,
                data: int) -> StepCost:
    model = _denoiser(shape, condition_dim, unet)
    return step_cost([Pass(lambda: model(*_inputs(model, batch)).pow(2).mean())],
                     trained=[(model, ADAM_SLOTS)], data_bytes=data)


@lru_cache(maxsize=None)
def _call(shape: tuple, condition_dim: int, unet: tuple, batch: int, mode: str) -> StepCost:
    """One UNet call: ``sample`` (no autograd), ``grad`` (back to the input, Diff-MI's attack)
    or ``finetune`` (Diff-MI's class pathway and middle block trained)."""
    model = _denoiser(shape, condition_dim, unet)
    if mode == "sample":
        def run() -> None:
            with torch.no_grad():
                model(*_inputs(model, batch))
        return step_cost([Pass(run)], frozen=[model])
    trained = [(m, ADAM_SLOTS) for name, m in model.unet.named_modules()
               if mode == "finetune" and f"{name}.".startswith(FINETUNED)]
    return step_cost([Pass(lambda: model(*_inputs(model, batch, mode == "grad")).sum())],
                     frozen=[model], trained=trained)


def _unet(cfg: Config, condition_dim: int) -> tuple:
    fields = CLASS_UNET_FIELDS if hasattr(cfg, "num_heads") else UNET_FIELDS
    return _space(cfg), condition_dim, frozen_key(cfg, fields)


def _cfg_batch(batch: int, guidance: float) -> int:
    """Classifier-free guidance runs the null and the conditional branch in one batch."""
    return batch if guidance == 1.0 else 2 * batch


def _autoencoder_phase(cfg: Config, s: Setting) -> list[Phase]:
    if cfg.space != "latent":
        return []
    key = ("prior-autoencoder", cfg.resolution, *frozen_key(cfg, (
        "latent_channels", "latent_downsample", "ae_width", "ae_steps", "ae_batch_size")))

    def cost() -> StepCost:
        ae = on_meta(lambda: ConvAutoencoder(cfg.resolution, cfg.latent_channels,
                                             cfg.latent_downsample, cfg.ae_width))
        n = cfg.ae_batch_size
        return step_cost([Pass(lambda: ae.decode(ae.encode(torch.rand(
            n, 3, cfg.resolution, cfg.resolution))).mean())], trained=[(ae, ADAM_SLOTS)],
            data_bytes=s.aux_bytes(cfg.resolution))
    return [Phase("autoencoder", "prior", cfg.ae_steps, cost, share=key)]


def _micro(batch: int, micro_batch: int) -> int:
    """The largest micro-batch of a ``batch`` split into ``micro_batch`` (0: unsplit)."""
    return micro_batch if 0 < micro_batch < batch else batch


def _accumulated(cost: StepCost, micro: int, batch: int) -> StepCost:
    """A step measured at one micro-batch, repeated over the ``batch`` (gradient
    accumulation): FLOPs scale, the activation peak stays one micro-batch's."""
    return scaled(cost, batch / micro)


def _prior_phases(cfg: Config, s: Setting, component: str, key: tuple,
                  condition_dim: int, label: str) -> list[Phase]:
    """Labelling the aux split with the target, then ``train_denoiser`` (per target; ``key``
    identifies the prior's settings) in micro-batches where the config has them."""
    share = (component, key, s.target)
    micro = _micro(cfg.batch_size, getattr(cfg, "micro_batch", 0))
    return [
        *_autoencoder_phase(cfg, s),
        target_queries(s, s.aux_images, cfg.resolution, label=f"{label} labels", role="prior",
                       share=(*share, "labels")),
        Phase(f"{label} prior", "prior", cfg.train_steps, lambda: _accumulated(_train_step(
            *_unet(cfg, condition_dim), micro, s.aux_bytes(cfg.resolution)), micro,
            cfg.batch_size), share=share),
    ]


def _sampling(cfg: Config, s: Setting, images: float, label: str) -> Phase:
    b = _cfg_batch(cfg.sample_batch, cfg.guidance_scale)
    return Phase(label, "attack", batches(images, cfg.sample_batch) * cfg.sampler_steps,
                 lambda: _call(*_unet(cfg, _condition_dim(cfg, s)), b, "sample"))


def _condition_dim(cfg: Config, s: Setting) -> int:
    if getattr(cfg, "condition", "class") == "feature":
        return target_network(s.target, s.preset, s.num_classes).feature_dim
    return s.num_classes


# --- UAMI -------------------------------------------------------------------------------------

@workload("uami")
def uami(cfg: Config, s: Setting) -> list[Phase]:
    draws = cfg.candidates if cfg.filter else 1
    phases = [*_prior_phases(cfg, s, "prior-uami", whole_config(cfg), s.num_classes, "UAMI"),
              _sampling(cfg, s, s.generated * draws, "sample candidates")]
    if draws > 1:
        phases.append(target_queries(s, s.generated * draws, cfg.resolution,
                                     label="label filter"))
    return phases


# --- Diff-MI ----------------------------------------------------------------------------------

def _refinement_steps(cfg: Config) -> int:
    """DDIM grid timesteps in (0, ``final_start``] ("leading" spacing: T/grid, 2T/grid, …)."""
    ratio = TRAIN_TIMESTEPS // cfg.final_grid
    return min(cfg.final_grid - 1, cfg.final_start // ratio)


@workload("diffmi")
def diffmi(cfg: Config, s: Setting) -> list[Phase]:
    unet, res, b = _unet(cfg, s.num_classes), cfg.resolution, cfg.attack_batch
    kept = cfg.ft_keep
    ft_micro = _micro(cfg.ft_classes, cfg.ft_micro_batch)
    attack_micro = _micro(b, cfg.attack_micro_batch)

    def finetune() -> StepCost:
        sampler = scaled(_call(*unet, _cfg_batch(ft_micro, cfg.ft_guidance), "finetune"),
                         cfg.ft_sampler_steps, memory=True)
        return _accumulated(combine(sampler, target_pass(
            s, ft_micro * kept * cfg.ft_augmentations, res, True)), ft_micro, cfg.ft_classes)

    def reconstruct() -> StepCost:
        return _accumulated(sequential(
            _call(*unet, _cfg_batch(attack_micro, cfg.attack_guidance), "grad"),
            target_pass(s, attack_micro * cfg.augmentations, res, True)), attack_micro, b)

    finetuned = max(1, round(cfg.ft_class_fraction * s.num_classes))
    finetune_steps = cfg.ft_epochs * batches(finetuned, cfg.ft_classes)
    share = ("prior-diffmi", whole_config(cfg), s.target)
    n_batches = batches(s.generated, b)
    return [
        *_prior_phases(cfg, s, "prior-diffmi-pretrain", whole_config(cfg), s.num_classes,
                       "Diff-MI"),
        Phase("Diff-MI fine-tune", "prior", finetune_steps, finetune, share=share,
              note="at most: stops early at ft_threshold"),
        Phase("reconstruct", "attack", n_batches * cfg.steps, reconstruct),
        Phase("refine", "attack", n_batches * _refinement_steps(cfg),
              lambda: _call(*unet, _cfg_batch(b, cfg.attack_guidance), "sample")),
        Phase("PGD", "attack", n_batches * (cfg.pgd_steps + 1) if cfg.pgd else 0,
              lambda: target_pass(s, b, res, True)),
    ]


# --- FGMIA and its ablations ------------------------------------------------------------------

def fgmia(cfg: Config, s: Setting) -> list[Phase]:
    from mibench.attacks.fgmia import PRIOR_FIELDS
    return [*_prior_phases(cfg, s, "prior-fgmia", frozen_key(cfg, PRIOR_FIELDS),
                           _condition_dim(cfg, s), "FGMIA"),
            _sampling(cfg, s, s.generated, "sample"),
            target_queries(s, s.generated, cfg.resolution, label="select")]


for _name in ("fgmia", "fgmia-no-fg", "fgmia-no-transf", "fgmia-no-scaleft"):
    workload(_name)(fgmia)
