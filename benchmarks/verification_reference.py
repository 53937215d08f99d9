"""Reference values of the new evaluation metrics on real private-test images (issue 19.4/19.6).

    .venv/bin/python benchmarks/verification_reference.py [--preset mini] [TARGET ...]

For each target (default ``arcface-18 ir152``), enrolled as a run enrols it (``run.enrolment``
and ``run.seed`` of the preset): ``sar_far1e-3``, ``eval_acc1`` and ``eval2_acc1`` of the
private-test images labelled with their own identity (the ceiling an attack could reach), and
``sar_far1e-3`` with every image labelled as the next identity (≈ FAR by construction: these
are the impostor pairs the threshold was set on), and the threshold τ itself.
"""

from __future__ import annotations

import argparse

from mibench.cell import CellSetting
from mibench.metrics import evaluate
from mibench.runconfig import resolve
from mibench.targets.enrolment import enrol
from mibench.targets.zoo import get_entry, load_entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", default=["arcface-18", "ir152"])
    parser.add_argument("--preset", default="mini", choices=["smoke", "mini"])
    args = parser.parse_args()
    tree = resolve(args.preset, flags={"device": "cpu"}, with_attacks=False)
    setting = CellSetting.build(tree, show_progress=False)
    test = setting.world.split("private-test")
    images, labels = test.float_images(), test.labels
    others = (labels + 1) % setting.world.num_private
    for name in args.targets:
        target = load_entry(get_entry(name), setting.world, setting.cache, args.preset,
                            setting.device, False).target
        enrol(target, setting.world.split("private-train"), tree["run"]["enrolment"],
              tree["run"]["seed"])
        own = evaluate(images, labels, target=target, private=setting.reference,
                       metrics=["sar_far1e-3", "eval_acc1", "eval2_acc1"])
        other = evaluate(images, others, target=target, private=setting.reference,
                         metrics=["sar_far1e-3"])[0]
        shown = {v.name: v.reason if v.value is None else round(v.value, 4) for v in own}
        threshold = list(setting.reference.thresholds.values())[-1:]
        print(f"{name}: private-test {shown}; labelled as another identity: sar_far1e-3 "
              f"{other.value if other.value is None else round(other.value, 4)}; "
              f"threshold {[round(t, 4) for t in threshold]}")


if __name__ == "__main__":
    main()
