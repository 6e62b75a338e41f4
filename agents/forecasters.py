"""Per-VM, per-metric online forecasting with prediction intervals.

:class:`MetricForecaster` runs River's Holt linear-trend model (``HoltWinters`` without a
season) on one series and keeps the exponentially weighted mean absolute one-step error, from
which it widens intervals with the square root of the horizon. Forecasts never go below zero:
every metric here is a level or a rate.

>>> fc = MetricForecaster()
>>> for t in range(50):
...     fc.learn_one(100.0 + 2 * t)
>>> [round(v) for v in fc.forecast(3)]
[200, 202, 204]
>>> lo80, hi80, lo90, hi90 = fc.interval(3)[0]
>>> lo90 <= lo80 <= 200 <= hi80 <= hi90
True
"""

from __future__ import annotations

import math

from river import time_series

FORECASTER_NAME = "holt-linear"
_Z80 = 1.2816
_Z90 = 1.6449
_MAE_TO_SD = 1.2533  # sqrt(pi / 2): the standard deviation of a normal error from its MAE


class MetricForecaster:
    """Holt linear trend + EW mean absolute error intervals, for one series.

    Parameters
    ----------
    alpha, beta
        Level and trend smoothing of the Holt model.
    error_halflife
        Half-life, in observations, of the weight of past one-step errors.
    """

    def __init__(self, alpha: float = 0.5, beta: float = 0.05,
                 error_halflife: float = 48.0) -> None:
        self.model = time_series.HoltWinters(alpha=alpha, beta=beta)
        self.n_learned = 0
        self.last = 0.0
        self.mae = 0.0
        self._decay = 0.5 ** (1.0 / error_halflife)

    def learn_one(self, y: float) -> None:
        """Learn the next observation of the series."""
        if self.n_learned >= 2:
            error = abs(y - self.forecast(1)[0])
            self.mae = self._decay * self.mae + (1 - self._decay) * error
        self.model.learn_one(y)
        self.last = y
        self.n_learned += 1

    def forecast(self, horizon: int) -> list[float]:
        """Point forecasts for the next ``horizon`` steps (the last value until two are seen)."""
        if self.n_learned < 2:  # River's model has no level before its second value
            return [max(0.0, self.last)] * horizon
        return [max(0.0, float(v)) for v in self.model.forecast(horizon)]

    def interval(self, horizon: int) -> list[tuple[float, float, float, float]]:
        """(lower_80, upper_80, lower_90, upper_90) for each of the next ``horizon`` steps."""
        out = []
        for h, point in enumerate(self.forecast(horizon), start=1):
            sd = _MAE_TO_SD * self.mae * math.sqrt(h)
            out.append((max(0.0, point - _Z80 * sd), point + _Z80 * sd,
                        max(0.0, point - _Z90 * sd), point + _Z90 * sd))
        return out
