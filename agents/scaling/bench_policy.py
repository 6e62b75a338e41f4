"""The recommender's right-sizing as a ``bench/scaling.py`` policy: the same forecasters,
:class:`~agents.scaling.rightsizing.RightSizer` and :mod:`~agents.scaling.sizing` choices the
agent uses, fed cpu cores and memory bytes."""

from __future__ import annotations

from agents.forecasting import SeriesForecaster
from agents.scaling.recommender import MEMORY_STEP_BYTES, MIN_CORES
from agents.scaling.sizing import (
    SizingConfig,
    cpu_forecast,
    cpu_sizer,
    memory_forecast,
    memory_sizer,
    recent_cells,
)


class ForecastPolicy:
    """Online policy: learn a sample, then the allocation in effect from the next one on."""

    def __init__(self, capacity_cores: float, capacity_bytes: float,
                 cfg: SizingConfig | None = None) -> None:
        self.cfg = cfg or SizingConfig()
        self.cpu_fc = SeriesForecaster()
        self.mem_fc = SeriesForecaster()
        self.cpu = cpu_sizer(capacity_cores, self.cfg, floor=MIN_CORES)
        self.mem = memory_sizer(capacity_bytes, self.cfg, floor=MEMORY_STEP_BYTES)

    def learn_one(self, t: float, cpu_cores: float, mem_bytes: float) -> None:
        self.cpu_fc.learn_one(t, cpu_cores)
        self.cpu.update(t, forecast=cpu_forecast(self.cpu_fc.forecast_at(t)),
                        recent=recent_cells(self.cpu_fc, self.cfg.cpu_window_s))
        self.mem_fc.learn_one(t, mem_bytes)
        self.mem.update(t, forecast=memory_forecast(self.mem_fc.forecast_at(t)),
                        recent=recent_cells(self.mem_fc, self.cfg.memory_window_s))

    def allocation(self) -> tuple[float, float]:
        return self.cpu.allocation, self.mem.allocation


def make(capacity_cores: float, capacity_bytes: float, step_s: float) -> ForecastPolicy:
    """The factory ``bench/scaling.py`` looks for (``step_s`` unused: the forecasters find
    the step themselves)."""
    return ForecastPolicy(capacity_cores, capacity_bytes)
