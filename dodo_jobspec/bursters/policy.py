"""Which tasks may burst, where to, and when: the selector, the ordering and the `burst:` config.

    burst:                                  # jobspec-do.yaml
    - {plugin: flux, name: big, uri: "local:///run/flux/local", after: 30s}
    - {plugin: flux-local, size: 4}
    burst_selector: mypkg.rules:gpu_tasks   # default: attribute `burstable: true`
    burst_order: mypkg.rules:cheapest_first # default: the order written above

``--burst NAME[,NAME]`` keeps only the named entries, in that order (a plugin name that no
entry uses stands for that plugin with its default settings).

A selected task goes to the first burster (in order) that can take it when the primary
cannot take it at all (asked before submitting), or when it has waited in the primary's queue
longer than that burster's ``after``. None can: it stays, and `plan` says why.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PluginError, Problem, SpecError, suggest
from ..spec.model import ResourceRequest, Spec, Unit
from ..spec.resolve import parse_duration
from ..transformers.base import Transformer
from .base import Burster, BurstSettings

Selector = Callable[[Unit], bool]
Ordering = Callable[[Sequence[Burster], Unit], Iterable[Burster]]


def is_burstable(unit: Unit) -> bool:
    """The default selector: attribute ``burstable: true`` (inherited from groups)."""
    value = unit.attributes.extra.get("burstable", False)
    return value is True or str(value).lower() in ("true", "yes", "1")


def in_order(bursters: Sequence[Burster], unit: Unit) -> Iterable[Burster]:
    """The default ordering: as configured."""
    return bursters


@dataclass
class BurstPolicy:
    """The bursters of one run, and how a task is matched to one."""

    bursters: list[Burster]
    selector: Selector = is_burstable
    ordering: Ordering = in_order
    # Why a unit cannot go to a burster for what it needs besides resources (its stage steps
    # could not follow it there: set by the engine, which knows the run's stager); None: it
    # can.
    staging: Callable[[Unit, Burster], str | None] | None = None

    def selected(self, unit: Unit) -> bool:
        """Whether ``unit`` may burst at all."""
        return bool(self.bursters) and bool(self.selector(unit))

    def candidates(self, unit: Unit) -> list[Burster]:
        """The bursters in the order ``unit`` tries them."""
        return list(self.ordering(self.bursters, unit))

    def refusal(self, unit: Unit, burster: Burster, req: ResourceRequest | None) -> str | None:
        """Why ``burster`` cannot take ``unit`` asking ``req`` (None: it can): its staging
        first (nothing is asked of the place), then the place's own answer."""
        if self.staging is not None:
            why = self.staging(unit, burster)
            if why is not None:
                return why
        return burster.refuses(req)

    def first_taker(self, unit: Unit, req: ResourceRequest | None,
                    waited: float | None = None) -> tuple[Burster | None, list[str]]:
        """The first burster that takes ``req`` (with ``waited``: only those whose `after`
        has passed), and why each one before it did not."""
        why = []
        for b in self.candidates(unit):
            if waited is not None and (b.settings.after is None or waited < b.settings.after):
                continue
            refusal = self.refusal(unit, b, req)
            if refusal is None:
                return b, why
            why.append(f"{b.label}: {refusal}")
        return None, why

    def close(self, needed: Callable[[Burster], bool]) -> None:
        """The run is over: let each burster go (``needed``: a job still lives there)."""
        for b in self.bursters:
            b.close(needed(b))


    def takes_over(self, problems: list[Problem], spec: Spec, primary: Transformer
                   ) -> list[Problem]:
        """``problems`` the primary's check found, less those about a selected unit that a
        burster can take instead (it goes straight there when the run reaches it)."""
        by_path = {n.spec_path: n for n in spec.nodes.values()}
        kept = []
        for p in problems:
            node = by_path.get(str(p.path[0])) if len(p.path) == 1 else None
            if node is not None and self.selected(node):
                taker, why = self.first_taker(node, primary.choose(node)[0])
                if taker is not None:
                    continue
                if why:  # it may burst, and could not: say why not, not only the primary's no
                    p = dataclasses.replace(p, hint="; ".join(filter(None, (
                        p.hint, "no burster can take it: " + "; ".join(why)))))
            kept.append(p)
        return kept


# -- building one from the config file and the command line ---------------------------------------
def build(entries: Sequence[Any] | None, *, config_path: Path | None = None,
          names: Sequence[str] = (), selector: str | None = None, order: str | None = None,
          state_dir: Path | None = None) -> BurstPolicy:
    """The policy from the config's ``burst:`` entries and ``--burst`` names; SpecError (with
    the config file's line) for an entry that is wrong."""
    from .. import plugins

    problems: list[Problem] = []
    doc = _document(config_path)

    def problem(message: str, path: list[str | int], hint: str | None = None) -> None:
        if doc is not None:
            problems.append(doc.problem(message, path, hint))
        else:
            problems.append(Problem(message, tuple(path), hint, "--burst"))

    configured: list[Burster] = []
    if entries is not None and not isinstance(entries, list):
        problem("burst must be a list of bursters", ["burst"],
                "e.g. `burst: [{plugin: flux, uri: 'local:///...', after: 30s}]`")
        entries = []
    for i, entry in enumerate(entries or ()):
        b = _entry(entry, i, state_dir, problem)
        if b is not None:
            configured.append(b)
    chosen = configured
    if names:
        by_label = {b.label: b for b in configured}
        chosen = []
        for name in names:
            if name in by_label:
                chosen.append(by_label[name])
            elif name in plugins.names(plugins.BURSTERS):
                chosen.append(_make(name, {"name": name}, state_dir))
            else:
                known = list(dict.fromkeys([*by_label, *plugins.names(plugins.BURSTERS)]))
                near = suggest(name, known)
                problems.append(Problem(
                    f"no burster '{name}' in the config's `burst:` list or among the plugins",
                    ("--burst",), f"did you mean '{near}'?" if near else "known: "
                    + ", ".join(known), "command line"))
    sel = _function(selector, "burst_selector", problem) if selector else is_burstable
    ordr = _function(order, "burst_order", problem) if order else in_order
    if problems:
        raise SpecError(problems)
    return BurstPolicy(chosen, sel or is_burstable, ordr or in_order)


def _document(path: Path | None) -> Any:
    if path is None:
        return None
    from ..spec.source import read_document

    return read_document(path)


def _entry(entry: Any, i: int, state_dir: Path | None,
           problem: Callable[..., None]) -> Burster | None:
    from .. import plugins

    where: list[str | int] = ["burst", i]
    if not isinstance(entry, dict) or not entry.get("plugin"):
        problem("a burst entry needs `plugin:`", where,
                "known plugins: " + ", ".join(plugins.names(plugins.BURSTERS)))
        return None
    name = str(entry["plugin"])
    try:
        cls = plugins.load(plugins.BURSTERS, name)
    except PluginError as exc:
        problem(str(exc).replace("burster", "burst plugin", 1), [*where, "plugin"])
        return None
    fields = {f.name: f for f in dataclasses.fields(cls.Settings)}
    values: dict[str, Any] = {}
    ok = True
    for key, value in entry.items():
        if key == "plugin":
            continue
        if key not in fields:
            near = suggest(str(key), fields)
            problem(f"burster '{name}' has no setting '{key}'", [*where, key],
                    f"did you mean '{near}'?" if near else "settings: " + ", ".join(fields))
            ok = False
            continue
        try:
            values[key] = _coerce(value, fields[key], cls.Settings)
        except ValueError as exc:
            problem(f"burster '{name}' setting '{key}': {exc}", [*where, key])
            ok = False
    return _make(name, values, state_dir) if ok else None


def _make(name: str, values: dict[str, Any], state_dir: Path | None) -> Burster:
    from .. import plugins

    cls = plugins.load(plugins.BURSTERS, name)
    return cls(cls.Settings(**values), state_dir)  # type: ignore[no-any-return]


def _coerce(value: Any, f: dataclasses.Field[Any], cls: type[BurstSettings]) -> Any:
    """A config value as the settings field's type (so settings are typed, not strings)."""
    if f.name == "after":
        return None if value is None else parse_duration(value)
    kind = typing.get_type_hints(cls)[f.name]
    args = [a for a in typing.get_args(kind) if a is not type(None)] \
        if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union else [kind]
    if value is None:
        if len(args) < len(typing.get_args(kind)):
            return None
        raise ValueError("a value is needed")
    target = args[0]
    if target is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"expected true or false, not {value!r}")
    if target in (int, float):
        if isinstance(value, bool):
            raise ValueError(f"expected a number, not {value!r}")
        try:
            return target(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, not {value!r}") from None
    if target is str:
        if isinstance(value, dict | list):
            raise ValueError(f"expected text, not {value!r}")
        return str(value)
    return value


def _function(ref: str, key: str, problem: Callable[..., None]) -> Callable[..., Any] | None:
    """``module:function`` imported; a problem naming the config key when it is not."""
    module, _, attr = str(ref).partition(":")
    if not module or not attr:
        problem(f"{key} must be module:function, not {ref!r}", [key])
        return None
    try:
        fn = getattr(importlib.import_module(module), attr)
    except Exception as exc:
        problem(f"{key} {ref}: cannot be imported ({exc})", [key],
                "is the module installed in this environment?")
        return None
    if not callable(fn):
        problem(f"{key} {ref} is not a function", [key])
        return None
    return fn  # type: ignore[no-any-return]
