"""One registry type for attacks, targets, datasets and metrics.

Our own components register with a decorator (``@ATTACKS.register("gmi")``) in modules that the
registry imports on first use. Third-party plugins register through entry-point groups
(``mibench.attacks``, ``mibench.targets``, ``mibench.datasets``, ``mibench.metrics``) in their own
package, or by loading a file with ``--plugin path/to/file.py``. Unknown names fail with the
closest registered names. A registry may check what registers (attacks: the attack contract,
:func:`mibench.attack.check_attack_contract`), so a broken plugin fails when it is loaded.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from mibench.errors import MibenchError, UnknownNameError

T = TypeVar("T")


class Registry:
    """Name → component mapping for one kind of component."""

    def __init__(self, kind: str, group: str, builtin_modules: tuple[str, ...] = (),
                 check: Callable[[str, Any], None] | None = None) -> None:
        self.kind = kind
        self.group = group
        self._builtin_modules = builtin_modules
        self._check = check
        self._items: dict[str, Any] = {}
        self._aliases: dict[str, str] = {}
        self._derivations: list[tuple[Callable[[str], Any], Callable[[], list[str]]]] = []
        self._loaded = False

    def register(self, name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name")`` on a class or factory."""

        def add(obj: T) -> T:
            self.add(name, obj, aliases=aliases)
            return obj

        return add

    def add(self, name: str, obj: Any, *, aliases: tuple[str, ...] = ()) -> None:
        """Register ``obj`` under ``name`` after the registry's check (a ``MibenchError``)."""
        if self._check is not None:
            self._check(name, obj)
        existing = self._items.get(name)
        if existing is not None and existing is not obj:
            raise MibenchError(f"{self.kind} {name!r} is registered twice "
                               f"({_origin(existing)} and {_origin(obj)}); rename one of them")
        self._items[name] = obj
        for alias in aliases:
            self._aliases[alias] = name

    def derive(self, build: Callable[[str], Any], candidates: Callable[[], list[str]]) -> None:
        """Resolve names that are not registered through ``build(name)`` (an object with a
        ``name``, or None when the name is not of its form), e.g. ``ir152+mid`` from ``ir152``.
        Derived names are not in :meth:`names` (``all`` leaves them out); patterns that contain
        ``+`` match ``candidates()``."""
        self._derivations.append((build, candidates))

    def _derived(self, name: str) -> Any:
        for build, _ in self._derivations:
            found = build(name)
            if found is not None:
                return found
        return None

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self._builtin_modules:
            importlib.import_module(module)
        for ep in entry_points(group=self.group):
            try:
                obj = ep.load()
            except Exception as err:  # a broken plugin must not hide the others: say which
                raise MibenchError(f"plugin entry point {ep.name!r} in group {self.group} "
                                   f"failed to load ({type(err).__name__}: {err}); fix or "
                                   f"uninstall that package") from err
            if ep.name not in self._items:
                self.add(ep.name, obj)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def items(self) -> Iterator[tuple[str, Any]]:
        for name in self.names():
            yield name, self._items[name]

    def __contains__(self, name: str) -> bool:
        self._load()
        if name in self._items or name in self._aliases:
            return True
        try:
            return self._derived(name) is not None
        except MibenchError:
            return False

    def canonical(self, name: str) -> str:
        """Resolve an alias to its registered name (or raise with close matches)."""
        self._load()
        name = self._aliases.get(name, name)
        if name not in self._items and (derived := self._derived(name)) is not None:
            return str(derived.name)
        if name not in self._items:
            known = sorted(self._items) + sorted(self._aliases)
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else (
                f"known {self.kind}s: {', '.join(known)}" if known else
                f"no {self.kind}s are registered")
            raise UnknownNameError(f"unknown {self.kind} {name!r}; {hint} "
                                   f"(see `mibench list {self.kind}s`)")
        return name

    def get(self, name: str) -> Any:
        self._load()
        name = self._aliases.get(name, name)
        if name not in self._items and (derived := self._derived(name)) is not None:
            return derived
        return self._items[self.canonical(name)]

    def expand(self, spec: str) -> list[str]:
        """Expand a comma list of names, aliases, glob patterns (``arcface-*``) and ``all``."""
        self._load()
        out: list[str] = []
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            if part == "all":
                matched = self.names()
            elif any(ch in part for ch in "*?["):
                pool = ([n for _, names in self._derivations for n in names()] if "+" in part
                        else list(self._items))
                matched = sorted(n for n in pool if fnmatch.fnmatchcase(n, part))
                if not matched:
                    raise UnknownNameError(f"pattern {part!r} matches no {self.kind}; "
                                           f"see `mibench list {self.kind}s`")
            else:
                matched = [self.canonical(part)]
            out.extend(m for m in matched if m not in out)
        if not out:
            raise UnknownNameError(f"no {self.kind} selected by {spec!r}")
        return out


def _origin(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def load_plugin_file(path: str) -> None:
    """Import a Python file whose decorators register components (``--plugin file.py``)."""
    file = Path(path)
    if not file.is_file():
        raise MibenchError(f"plugin file {path} does not exist; pass a path to a .py file")
    name = f"mibench_plugin_{file.stem}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise MibenchError(f"plugin file {path} cannot be imported; it must be a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise MibenchError(f"plugin file {path} raised {type(err).__name__}: {err}") from err


def _check_attack(name: str, obj: Any) -> None:
    from mibench.attack import check_attack_contract  # torch-heavy: import on first registration

    check_attack_contract(name, obj)


ATTACKS = Registry("attack", "mibench.attacks", ("mibench.attacks",), check=_check_attack)
TARGETS = Registry("target", "mibench.targets", ("mibench.targets",))
DATASETS = Registry("dataset", "mibench.datasets", ("mibench.datasets",))
METRICS = Registry("metric", "mibench.metrics", ("mibench.metrics",))
DEFENSES = Registry("defense", "mibench.defenses", ("mibench.targets.defenses",))
