"""A selector and an ordering given to the policy tests as `module:function` (as a user's
own module would be)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dodo_jobspec.bursters.base import Burster
from dodo_jobspec.spec.model import Unit


def named_big(unit: Unit) -> bool:
    return unit.name.startswith("big")


def reversed_order(bursters: Sequence[Burster], unit: Unit) -> Iterable[Burster]:
    return list(reversed(bursters))
