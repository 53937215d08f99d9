"""The evaluation models never reach an attack (issue 19.4): nothing an attack's context holds
leads to either evaluator or to the private reference that carries them."""

from __future__ import annotations

import gc
import sys
import types

import torch

from mibench.cell import CellSetting, attack_setting, build_attack
from mibench.runconfig import resolve


def reachable(root: object, limit: int = 200_000) -> set[int]:
    """Ids of the objects reachable from ``root`` through references, not entering modules,
    classes or module namespaces (what any code can import is not what the context hands)."""
    namespaces = {id(vars(m)) for m in list(sys.modules.values()) if m is not None}
    seen: set[int] = set()
    stack = [root]
    while stack and len(seen) < limit:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (types.ModuleType, type)) or id(obj) in namespaces:
            continue
        seen.add(id(obj))
        stack.extend(gc.get_referents(obj))
    assert len(seen) < limit, "object graph walk did not finish"
    return seen


def test_an_attack_context_has_no_path_to_either_evaluator(smoke_cache):
    torch.set_num_threads(1)
    tree = resolve("smoke", flags={"attacks": "gmi", "targets": "arcface-18",
                                   "cache_dir": smoke_cache, "device": "cpu"})
    setting = CellSetting.build(tree, show_progress=False)
    private = setting.reference
    assert private.eval2_model is not None and private.eval2_model is not private.eval_model
    attack = build_attack("gmi", tree)   # white-box: the widest view an attack can get
    target, ctx = attack_setting(attack, "arcface-18", setting.world, setting.cache, "smoke",
                                 setting.device, show_progress=False)
    found = reachable(ctx) | reachable(attack)
    assert id(target) in found   # the walk does reach what the view hands out
    for judge in (private, private.eval_model, private.eval2_model):
        assert id(judge) not in found
