"""The leaderboard's opening section, *What this benchmark shows* (issue 22.3): per target family
and threat model, the attacks that are best within the 95 % intervals.

It is read off the ranking (:mod:`mibench.reports.ranking`), on the auxiliary set ``similar``
(the threat model of Table I; the shifted aux sets are Table V's question): on each target, the
*top tier* of a threat model is its best attack and every attack whose interval overlaps the
best's. A family's line names the attacks in the top tier on every one of its targets, then
each target's tier. Table VI's ablations of FGMIA are not attacks of their own and are left out."""

from __future__ import annotations

from mibench.experiments import get_experiment
from mibench.findings import compare
from mibench.registry import ATTACKS, TARGETS
from mibench.reports.ranking import Entry, ranked
from mibench.reports.tables import Column, target_kind

THREATS = {"whitebox": "white-box (gradients)", "scores": "black-box (scores)",
           "labels": "label-only"}
FAMILIES = (("closed", "closed-set classifiers"), ("open", "open-set embeddings"),
            ("finetuned", "fine-tuned embeddings"), ("defended", "defended classifiers"))
AUX = "similar"
ABLATIONS = frozenset(get_experiment("table6").attacks) - {"fgmia"}


def family(target: str) -> str | None:
    """``closed``, ``open``, ``finetuned`` (``@ftN``) or ``defended`` (``base+defense``);
    ``None`` for a target not registered here."""
    if "+" in target:
        return "defended"
    if "@" in target:
        return "finetuned"
    return target_kind(TARGETS.get(target)) if target in TARGETS else None


def top_tier(entries: list[Entry], column: Column) -> list[str]:
    """The attacks tied with the best of ``entries`` on ``column`` (the best first)."""
    ordered = [e for e in ranked(entries, column) if e.stat(column.name) is not None]
    if not ordered:
        return []
    best = ordered[0].stat(column.name)
    higher = column.direction == "higher"
    return [e.first.attack for e in ordered
            if compare(e.stat(column.name), best, higher) == 0]  # type: ignore[arg-type]


def summary_markdown(by_target: dict[str, list[Entry]], column: Column | None) -> list[str]:
    """The section as markdown lines (none when nothing was ranked)."""
    if column is None:
        return []
    rows = []
    for kind, label in FAMILIES:
        targets = [t for t in by_target if family(t) == kind]
        for access, threat in THREATS.items():
            tiers = {}
            for target in targets:
                entries = [e for e in by_target[target] if e.first.aux == AUX
                           and e.first.attack in ATTACKS and e.first.attack not in ABLATIONS
                           and ATTACKS.get(e.first.attack).spec.access == access]
                if entries:
                    tiers[target] = (top_tier(entries, column), len(entries))
            if not tiers:
                continue
            everywhere = [a for a in next(iter(tiers.values()))[0]
                          if all(a in tier for tier, _ in tiers.values())]
            each = "; ".join(f"`{t}`: {', '.join(tier) or 'n/a'} (of {n})"
                             for t, (tier, n) in tiers.items())
            rows.append(f"| {label} | {threat} | {', '.join(everywhere) or 'none'} | {each} |")
    if not rows:
        return []
    return ["## What this benchmark shows", "",
            f"The best attacks by `{column.name}` {column.arrow} within the 95 % intervals, read "
            f"off the ranking below (aux set `{AUX}`, mean over seeds): on each target, the "
            "best attack of a threat model and every attack whose interval overlaps it "
            "(FGMIA's ablations left out).", "",
            "| target family | threat model | best on every target | best per target "
            "(of how many attacks ran) |", "|---|---|---|---|", *rows, ""]
