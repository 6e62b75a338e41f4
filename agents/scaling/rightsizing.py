"""Right-sizing one resource of one VM: a target from the forecast, changed stably.

:class:`RightSizer` keeps an allocation (cores or bytes). Its *need* is the larger of the
forecast over the look-ahead (the caller picks which: the point forecast, or an interval's
upper bound) and a high quantile (``quantile``; 1.0 is the peak) of the recent use; its
*target* is the need plus a ``margin``. The allocation moves

* **up, promptly**, to the target as soon as the need crosses the allocation;
* **down, stably**, to the target, only after the target has stayed at least ``down_band``
  below the allocation for ``stabilization_s``, and never within ``cooldown_s`` of the
  previous change.

Forecasts see an hour ahead while an allocation is meant to hold for hours, so the recent
quantile carries what the forecast horizon cannot see (the next burst of a bursty VM, the next
peak of a periodic one), and the forecast brings the change forward when use is about to rise.

>>> rs = RightSizer(allocation=8.0, quantile=1.0, margin=0.25, stabilization_s=3600,
...                 cooldown_s=3600, down_band=0.2)
>>> [rs.update(300.0 * i, forecast=1.2, recent=[1.0, 1.5]) for i in range(3)]
[None, None, None]
>>> rs.update(3600.0, forecast=1.2, recent=[1.0, 1.5])
Change(direction='down', old=8.0, new=1.875, reason='target 1.88 for 1.0 h below 8')
>>> rs.update(3900.0, forecast=2.4, recent=[1.0, 1.5])
Change(direction='up', old=1.875, new=3.0, reason='forecast 2.4 above 1.88')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from operator import attrgetter
from typing import Literal, NamedTuple


class Change(NamedTuple):
    """One allocation change: which way, from and to, and why (for the reasons list)."""

    direction: Literal["up", "down"]
    old: float
    new: float
    reason: str


def window_quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank; ``q = 1`` is the maximum), 0 if empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))])


class RightSizer:
    """Stable allocation of one resource; see the module docstring.

    Parameters
    ----------
    allocation
        The allocation to start from (the VM's provisioned size).
    quantile
        Quantile of the recent use the target covers (1.0: its peak).
    margin
        Safety margin over the need.
    stabilization_s
        How long the target must stay low before a scale-down.
    cooldown_s
        Minimum time between a change and the next scale-down.
    down_band
        How far (share of the allocation) the target must be below it to count as low.
    floor
        The smallest allocation ever recommended.
    """

    __slots__ = ("allocation", "cooldown_s", "down_band", "floor", "last_change_at", "low_since",
                 "margin", "quantile", "stabilization_s")

    def __init__(self, allocation: float, *, quantile: float = 1.0, margin: float = 0.15,
                 stabilization_s: float = 3600.0, cooldown_s: float = 3600.0,
                 down_band: float = 0.2, floor: float = 0.0) -> None:
        self.allocation = max(allocation, floor)
        self.quantile = quantile
        self.margin = margin
        self.stabilization_s = stabilization_s
        self.cooldown_s = cooldown_s
        self.down_band = down_band
        self.floor = floor
        self.last_change_at = -math.inf
        self.low_since: float | None = None

    def need(self, forecast: float, recent: Sequence[float]) -> float:
        """The larger of the forecast and the ``quantile`` of the recent use."""
        return max(forecast, window_quantile(recent, self.quantile))

    def update(self, t: float, *, forecast: float, recent: Sequence[float]) -> Change | None:
        """Learn one step (``recent`` ends with the newest use); the change to make now, if
        any."""
        old = self.allocation
        need = self.need(forecast, recent)
        target = max(self.floor, need * (1.0 + self.margin))
        if need > old:
            why = "forecast" if forecast >= need else "recent use"
            return self._change(t, "up", target,
                                f"{why} {self._fmt(need)} above {self._fmt(old)}")
        if target > old * (1.0 - self.down_band):
            self.low_since = None
            return None
        if self.low_since is None:
            self.low_since = t
        if t - self.low_since >= self.stabilization_s and t - self.last_change_at >= \
                self.cooldown_s:
            hours = (t - self.low_since) / 3600.0
            return self._change(t, "down", target,
                                f"target {self._fmt(target)} for {hours:.1f} h below "
                                f"{self._fmt(old)}")
        return None

    def _fmt(self, x: float) -> str:
        """Cores as they are; bytes (an allocation of a MiB or more) in GiB."""
        return f"{x / GIB:.3g} GiB" if self.floor >= 2**20 or x >= 2**20 else _fmt(x)

    def _change(self, t: float, direction: Literal["up", "down"], new: float,
                reason: str) -> Change:
        old, self.allocation = self.allocation, new
        self.last_change_at = t
        self.low_since = None
        return Change(direction, old, new, reason)

    def __getstate__(self) -> tuple[object, ...]:
        return _STATE(self)

    def __setstate__(self, state: tuple[object, ...]) -> None:
        for s, v in zip(self.__slots__, state, strict=True):
            setattr(self, s, v)


#: The stored state of :class:`RightSizer`: its slots' values, in order.
_STATE = attrgetter(*RightSizer.__slots__)


def _fmt(x: float) -> str:
    return f"{x:.3g}"


GIB = float(2**30)
