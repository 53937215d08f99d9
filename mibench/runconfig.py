"""Resolving a run's full configuration: preset → YAML file → ``--set`` → command-line flags.

The resolved tree is what ``mibench run --dry-run`` prints and what is stored with results::

    preset: mini
    run:     {attacks, targets, aux, identities, samples, seed, device, ...}   (RunConfig)
    world:   {...}                                  (the world dataset's Config)
    attacks: {<name>: {...}}                        (each selected attack's Config)
    defenses: {<name>: {...}}                       (overrides of defended targets' defenses)

``--set defenses.mid.beta=0.01`` changes MID wherever a run's target is defended by it;
``--set defense=mid`` (``run.defense``) keeps one defense's targets of a defense experiment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

from mibench.config import (DEFAULT_PRESET, PRESETS, Config, load_yaml, param, parse_assignment,
                            set_path)
from mibench.cache import Cache
from mibench.errors import ConfigError
from mibench.experiments import check_plan_names, get_experiment
from mibench.registry import ATTACKS, DATASETS, DEFENSES, TARGETS
from mibench.world import World, WorldSummary

SECTIONS = ("preset", "run", "world", "attacks", "defenses")


@dataclass
class RunConfig(Config):
    """Settings of one ``mibench run`` (the benchmark protocol's knobs)."""

    attacks: str = param("all", "attacks to run: names, comma list, glob or 'all'")
    targets: str = param("arcface", "targets to attack: names, aliases, patterns or 'all'")
    world: str = param("synth", "the world (dataset) to run in")
    defense: str = param("", "keep only this defense's targets of a defense experiment "
                         "(e.g. defense-sweep); '' = all")
    experiment: str = param("", "a named plan of the paper (table1…table6, efficiency, "
                            "defenses) that fixes attacks, targets and aux sets (attacks / "
                            "targets given too keep a subset of it); '' = use those fields")
    aux: Literal["similar", "hq", "wild"] = param("similar", "auxiliary data given to attacks")
    identities: int = param(1000, "attack the first N private identities", ge=1)
    samples: int = param(16, "generated samples per identity (the paper's 16)", ge=1)
    enrolment: Literal["single", "mean"] = param(
        "single", "open-set gallery: one private-train image per identity, a seeded choice "
        "(single, the paper's and FGMIA's code) or the mean of all of them (mean); "
        "targets/enrolment.py")
    seed: int = param(0, "seed of the world, training and attacks", ge=0)
    seeds: int = param(1, "run every cell with seeds seed, seed+1, …; the report shows mean ± "
                       "std (priors and targets are trained once, with `seed`)", ge=1)
    device: Literal["auto", "cpu", "cuda"] = param("auto", "auto picks CUDA when present")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = param(
        "auto", "mixed precision of training, sampling and metric loops: auto = bf16 autocast "
        "on CUDA (fp16 + loss scaling where bf16 is unsupported), fp32 on the CPU "
        "(mibench/precision.py)")
    compile: Literal["off", "on"] = param(
        "off", "torch.compile the diffusion UNets in training and sampling (pays over long "
        "loops on a GPU; benchmarks/compile_speed.py measures it)")
    eval_model: str = param("", "evaluation model ('' = the zoo's default, densenet-121; or a "
                            "pretrained model such as dlib-resnet)")
    eval2_model: str = param("resnet-18", "second, independent evaluation model (issue 19.4: "
                             "eval2_acc1/5, transfer_gap), another family and recipe than the "
                             "first; 'none' = off", source="ours")
    results_dir: str = param("runs", "directory of the results store")
    cache_dir: str = param("", "cache directory ('' = $MIBENCH_CACHE or ~/.cache/mibench)")
    executor: Literal["local", "ray"] = param("local", "where cells run: one after another in "
                                              "this process, or as Ray tasks (mibench[ray])")
    address: str = param("", "Ray cluster for --executor ray: 'auto', HOST:PORT, or '' = a "
                         "private one on this machine")
    workers: int = param(0, "local executor: cells run at once, each in its own process; 0 = "
                         "auto (CPU: one per core, at most 4; CUDA: one per visible GPU)", ge=0)
    threads: int = param(0, "local executor: torch threads per cell process; 0 = auto (free "
                         "cores / workers: fewer when other processes load the machine)", ge=0)

    def validate(self) -> None:
        self._validate_eval2()
        if self.address and self.executor != "ray":
            raise ConfigError(f"--address {self.address} needs --executor ray")
        if self.workers > 1 and self.executor != "local":
            raise ConfigError(f"--workers {self.workers} is for the local executor; Ray sizes "
                              "its own workers")
        if self.threads and self.executor != "local":
            raise ConfigError(f"run.threads {self.threads} is for the local executor; Ray "
                              "sizes its own workers")

    def _validate_eval2(self) -> None:
        if self.eval2_model == "none":
            return
        from mibench.targets.entries import DEFAULT_EVALUATOR, evaluator_entry
        from mibench.targets.errors import TargetError

        try:
            second = evaluator_entry(self.eval2_model).name
        except TargetError as err:
            raise ConfigError(f"run.eval2_model: {err}") from None
        if second == evaluator_entry(self.eval_model or DEFAULT_EVALUATOR).name:
            raise ConfigError(f"run.eval2_model: {second} is already the first evaluation "
                              "model; choose another one or 'none'")

    presets = {
        "smoke": {"identities": 2, "samples": 2, "workers": 1},
        "mini": {"identities": 10},
    }


def resolve(preset: str | None = None, config_file: str | None = None,
            assignments: list[str] | None = None,
            flags: Mapping[str, Any] | None = None,
            world_flags: Mapping[str, Any] | None = None,
            with_attacks: bool = True) -> dict[str, Any]:
    """Return the fully resolved, validated configuration tree of a run (``flags`` set ``run``
    fields, ``world_flags`` world fields such as ``root``). ``with_attacks=False`` leaves the
    ``attacks`` section empty, for commands that only need the world and the targets: the
    attack plugins are then not even imported."""
    tree: dict[str, Any] = load_yaml(config_file) if config_file else {}
    unknown = sorted(set(tree) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"unknown config section(s) {unknown}; sections are {list(SECTIONS)}")
    for text in assignments or []:
        path, value = parse_assignment(text)
        if path == ["defense"]:
            path = ["run", "defense"]
        if path[0] not in SECTIONS:
            raise ConfigError(f"--set {text}: unknown section {path[0]!r}; "
                              f"use one of {list(SECTIONS)} (e.g. run.seed=1)")
        set_path(tree, path, value)
    for key, value in (flags or {}).items():
        if value is not None:
            set_path(tree, ["run", key], value)
    for key, value in (world_flags or {}).items():
        if value is not None:
            set_path(tree, ["world", key], value)
    chosen = preset or tree.get("preset") or DEFAULT_PRESET
    if chosen not in PRESETS:
        raise ConfigError(f"unknown preset {chosen!r}; choose one of {sorted(PRESETS)}")

    run_section = _section(tree, "run")
    if run_section.get("experiment"):
        run_section.update(_experiment_fields(run_section))
    run = RunConfig.resolve(chosen, run_section)
    world_cls = DATASETS.get(run.world)
    if (world_flags or {}).get("root") and "root" not in world_cls.Config.field_names():
        raise ConfigError(f"--root is for real-data worlds; world {run.world!r} has no folder: "
                          "add --world celeba (or folders)")
    world = world_cls.Config.resolve(chosen, _section(tree, "world"))
    TARGETS.expand(run.targets)
    defenses = _defenses(_section(tree, "defenses"))
    if not with_attacks:
        return {"preset": chosen, "run": run.to_dict(), "world": world.to_dict(), "attacks": {},
                **defenses}
    attack_overrides = _section(tree, "attacks")
    names = ATTACKS.expand(run.attacks) if ATTACKS.names() else []
    stray = sorted(set(attack_overrides) - set(names))
    if stray:
        raise ConfigError(f"config for attack(s) {stray} that this run does not select")
    attacks = {name: ATTACKS.get(name).Config.resolve(chosen, _section(attack_overrides, name))
               .to_dict() for name in names}
    return {"preset": chosen, "run": run.to_dict(), "world": world.to_dict(), "attacks": attacks,
            **defenses}


def _defenses(section: Mapping[str, Any]) -> dict[str, Any]:
    """``{"defenses": overrides}`` when any are given (checked against each defense's Config;
    the defaults stay the defense's own), else nothing: the tree keeps its four sections."""
    for name in section:
        DEFENSES.get(name).Config.resolve(None, _section(section, name))
    return {"defenses": {name: dict(v) for name, v in section.items()}} if section else {}


def _experiment_fields(run_section: Mapping[str, Any]) -> dict[str, Any]:
    """The attacks, targets and aux of the named experiment. ``attacks`` / ``targets`` given as
    well keep a subset of the plan (each must be in it); its aux sets cannot be changed."""
    experiment = get_experiment(run_section["experiment"])
    if "aux" in run_section:
        raise ConfigError(f"--experiment {experiment.name} fixes aux; drop --aux "
                          "(or run without --experiment)")
    experiment = experiment.restricted(run_section.get("defense", ""))
    check_plan_names(experiment)
    experiment = experiment.subset(
        ATTACKS.expand(run_section["attacks"]) if run_section.get("attacks") else None,
        TARGETS.expand(run_section["targets"]) if run_section.get("targets") else None)
    return {"attacks": ",".join(experiment.attacks), "targets": ",".join(experiment.targets),
            "aux": experiment.aux[0]}


def build_world(tree: Mapping[str, Any], cache: Cache, progress: bool = True) -> World:
    """The world of a resolved configuration tree (built into, or loaded from, ``cache``)."""
    dataset = DATASETS.get(tree["run"]["world"])
    return dataset.build(dataset.Config(**tree["world"]), cache, progress=progress)


def world_summary(tree: Mapping[str, Any], cache: Cache, progress: bool = True) -> WorldSummary:
    """The identity of the world of ``tree`` (name, fingerprint, private classes) from its
    config, without rendering it; a dataset plugin without ``summary`` is built instead."""
    dataset = DATASETS.get(tree["run"]["world"])
    config = dataset.Config(**tree["world"])
    if hasattr(dataset, "summary"):
        summary: WorldSummary = dataset.summary(config, cache)
        return summary
    return dataset.build(config, cache, progress=progress).summary()


def _section(tree: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = tree.get(name) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"config section {name!r} must be a mapping, got {value!r}")
    return dict(value)
