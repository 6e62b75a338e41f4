"""How the recommender sizes cpu and memory: one frozen config and the sizers built from it.

Cpu and memory differ in what a shortfall costs. Too little cpu throttles for a while: cpu
covers the 80th percentile of the last 6 hours with a 5 % margin, and moves up early when the
point forecast an hour ahead rises above the allocation. Too little memory risks the OOM
killer: memory covers the peak of the last 6 hours with a 15 % margin, and moves up as soon
as the upper bound of the 90 % interval, at any horizon, crosses the allocation. Both give
capacity back only after 2 hours low and 3 hours after the last change.
(``bench/scaling.py`` measures these choices against VPA-style and perfect-foresight
allocations; the README has the table.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from operator import attrgetter

from agents.forecasting.series import SeriesView
from agents.scaling.rightsizing import RightSizer

Band = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class SizingConfig:
    """Right-sizing parameters (see the module docstring)."""

    cpu_quantile: float = 0.8
    cpu_margin: float = 0.05
    cpu_window_s: float = 6 * 3600.0
    memory_margin: float = 0.15
    memory_window_s: float = 6 * 3600.0
    stabilization_s: float = 2 * 3600.0
    cooldown_s: float = 3 * 3600.0
    down_band: float = 0.2

    # What dataclasses would store (the fields' values, in order) without looking the fields
    # up on every call: each VM's state holds a config.
    def __getstate__(self) -> tuple[float, ...]:
        return _CONFIG_STATE(self)

    def __setstate__(self, state: Sequence[float]) -> None:
        for name, value in zip(_CONFIG_FIELDS, state, strict=False):
            object.__setattr__(self, name, value)  # frozen


_CONFIG_FIELDS = tuple(f.name for f in fields(SizingConfig))
_CONFIG_STATE = attrgetter(*_CONFIG_FIELDS)


def cpu_sizer(allocation: float, cfg: SizingConfig, floor: float = 0.0) -> RightSizer:
    return RightSizer(allocation, quantile=cfg.cpu_quantile, margin=cfg.cpu_margin,
                      stabilization_s=cfg.stabilization_s, cooldown_s=cfg.cooldown_s,
                      down_band=cfg.down_band, floor=floor)


def memory_sizer(allocation: float, cfg: SizingConfig, floor: float = 0.0) -> RightSizer:
    return RightSizer(allocation, quantile=1.0, margin=cfg.memory_margin,
                      stabilization_s=cfg.stabilization_s, cooldown_s=cfg.cooldown_s,
                      down_band=cfg.down_band, floor=floor)


def cpu_forecast(forecasts: Sequence[tuple[float, Band]]) -> float:
    """What cpu sizing reads from a forecaster's output: the point at the longest horizon."""
    return forecasts[-1][0] if forecasts else 0.0


def memory_forecast(forecasts: Sequence[tuple[float, Band]]) -> float:
    """What memory sizing reads: the highest 90 % upper bound over the horizons."""
    return max((band[3] for _, band in forecasts), default=0.0)


def recent_cells(fc: SeriesView, window_s: float) -> list[float]:
    """The forecaster's recent values on its time grid (the newest sample of each cell), over
    the last ``window_s``."""
    return fc.recent_cells(window_s)
