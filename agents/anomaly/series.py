"""Univariate online anomaly detection: several kinds of evidence, one calibrated score.

:class:`SeriesDetector` watches one metric. Each step it measures three kinds of evidence,

- ``extreme``: how far the value lies beyond the range the series has shown so far (a
  running max and min that decay slowly towards the mean), in units of that range;
- ``shift``: the recent bias of the best of three simple predictors (last value, a fast
  moving average, the same time of day in a learned daily profile; "best" by recent mean
  absolute error), in units of that predictor's usual error;
- ``level``: how far a fast moving average has moved from a slow one, in units of the
  series' spread;

and, when asked for (``trend=True``; the per-VM detector asks for it on memory, where sustained
growth means a leak),

- ``trend``: sustained growth: the recent mean step (an exponentially weighted mean of the
  increments, each clipped to the typical increment so that a jump counts as one step, not as
  a trend) in standard errors (how far that mean strays when steps of the typical size are
  independent); upward only. A slow ramp sets no new extreme by much and moves the level no
  faster than the daily rhythm does, but its steps lean one way for hours, which steps
  seldom do;

turns each into a z-score with :class:`~agents.anomaly.stats.Likelihood` (how unusual the
evidence is given its own history, so that every series and every kind lands on one scale) and
reports the strongest, weighted (:data:`WEIGHTS`), squashed onto [0, 1). A new range extreme is
the strongest sign on real CloudWatch series; drifts and shifts catch the rest. No look-ahead:
``score_one`` then ``learn_one``. State is a few hundred numbers.

>>> import math, random
>>> rng = random.Random(1)
>>> det = SeriesDetector()
>>> scores = []
>>> for i in range(2000):
...     x = 10 + math.sin(i / 20) + rng.gauss(0, 0.1) + (8 if i == 1500 else 0)
...     scores.append(det.score_one(300.0 * i, x))
...     det.learn_one(300.0 * i, x)
>>> max(range(2000), key=scores.__getitem__)
1500
"""

from __future__ import annotations

import math
from typing import Any

from agents.anomaly.stats import EWStats, Likelihood

#: Weight of each kind of evidence in the score (the strongest weighted z-score wins).
WEIGHTS: dict[str, float] = {"extreme": 3.0, "shift": 1.0, "level": 1.0, "trend": 1.0}
#: The kinds every series measures; ``trend`` only when asked for.
EVIDENCE: tuple[str, ...] = ("extreme", "shift", "level")
TREND_HALFLIFE = 36.0
TREND_CLIP = 1.0
_DAY_S = 86400.0
_SLOTS = 48
_PREDICTORS = ("last", "fast", "daily")
#: The attributes holding one EWStats (or None): see SeriesDetector.__getstate__.
_EWSTATS_ATTRS = ("steps", "step_size", "fast", "slow", "residual")


def squash(z: float) -> float:
    """Map a weighted z-score onto [0, 1) without saturating: 0 -> 0, 10 -> 0.5, 30 -> 0.75."""
    return z / (z + 10.0) if z > 0 else 0.0


class SeriesDetector:
    """Online anomaly score in [0, 1) for one series (see the module docstring).

    Parameters
    ----------
    warmup
        Steps before the evidence feeds its likelihoods; each likelihood then needs 100 more
        before any score above 0 is reported.
    range_halflife
        Half-life, in steps, of the running max and min's pull back towards the mean.
    trend
        Also measure ``trend`` evidence (sustained growth).
    """

    def __init__(self, warmup: int = 120, range_halflife: float = 10000.0,
                 trend: bool = False) -> None:
        self.warmup = warmup
        self.kinds: tuple[str, ...] = (*EVIDENCE, "trend") if trend else EVIDENCE
        self.steps = EWStats(TREND_HALFLIFE) if trend else None
        self.step_size = EWStats(400) if trend else None
        self.n = 0
        self.last: float | None = None
        self.fast = EWStats(4)
        self.slow = EWStats(400)
        self.errors = {k: EWStats(300) for k in _PREDICTORS}
        self.residual = EWStats(4)
        self.profile: list[float | None] = [None] * _SLOTS
        self.high: float | None = None
        self.low: float | None = None
        self.range_pull = 1.0 - 0.5 ** (1.0 / range_halflife)
        self.likelihoods = {k: Likelihood() for k in self.kinds}
        self.last_evidence: dict[str, float] = dict.fromkeys(self.kinds, 0.0)
        self.direction = 0.0
        self.directions: dict[str, float] = {}
        self._pending: tuple[dict[str, float], float] | None = None

    # -- evidence --------------------------------------------------------------------------
    def scale(self) -> float:
        """The series' spread (slow EW standard deviation), floored for flat series."""
        slow = self.slow
        scale = slow.std  # max(std, 1e-3 * |mean|, 1e-9), without the call: asked often
        floor = 1e-3 * abs(slow.mean)
        if floor > scale:
            scale = floor
        return 1e-9 if scale < 1e-9 else scale

    def _predictions(self, timestamp: float) -> dict[str, float]:
        preds: dict[str, float] = {}
        if self.last is not None:
            preds["last"] = self.last
            preds["fast"] = self.fast.mean
        slot = self.profile[int((timestamp % _DAY_S) / _DAY_S * _SLOTS)]
        if slot is not None:
            preds["daily"] = slot
        return preds

    def evidence(self, timestamp: float, value: float) -> tuple[dict[str, float], float]:
        """Raw evidence of each kind (higher is more anomalous) and the standardized residual
        of the best predictor."""
        scale = self.scale()
        preds = self._predictions(timestamp)
        residual = 0.0
        if preds:
            # The predictor with the lowest recent error (the first of equals), once it has
            # a record of 20 errors: min(preds, key=...) without the per-key calls.
            errors = self.errors
            best, best_error = "", math.inf
            for k in preds:
                stats = errors[k]
                error = stats.mean if stats.n > 20 else math.inf
                if not best or error < best_error:
                    best, best_error = k, error
            residual = (value - preds[best]) / max(errors[best].mean, 0.05 * scale)
        res = self.residual
        shift = abs(res.mean + res.alpha * (residual - res.mean))
        extreme = 0.0
        high, low = self.high, self.low
        if high is not None and low is not None and self.n >= 50:
            span = max(high - low, scale)
            extreme = max(0.0, (value - high) / span, (low - value) / span)
        level = abs(0.25 * value + 0.75 * self.fast.mean - self.slow.mean) / scale
        raw = {"extreme": math.log1p(10.0 * extreme), "shift": math.log1p(shift),
               "level": math.log1p(level)}
        if self.steps is not None:
            a = self.steps.alpha  # in standard errors of an EW mean of independent steps
            stderr = self._typical_step() * math.sqrt(a / (2.0 - a))
            raw["trend"] = math.log1p(max(0.0, self._mean_step(value)) / stderr)
        return raw, residual

    def _typical_step(self) -> float:
        assert self.step_size is not None
        return max(self.step_size.mean, 1e-3 * abs(self.slow.mean), 1e-9)

    def _mean_step(self, value: float) -> float:
        """The trend's EW mean step with ``value`` as the newest (clipped) increment."""
        assert self.steps is not None
        if self.last is None:
            return self.steps.mean
        limit = TREND_CLIP * self._typical_step()
        step = min(max(value - self.last, -limit), limit)
        a = max(self.steps.alpha, 1.0 / (self.steps.n + 1))
        return self.steps.mean + a * (step - self.steps.mean)

    @property
    def ready(self) -> bool:
        """True once every likelihood has its warm-up behind it."""
        return all(lik.long.n >= lik.warmup for lik in self.likelihoods.values())

    # -- River verbs -----------------------------------------------------------------------
    def score_one(self, timestamp: float, value: float) -> float:
        """Anomaly score of ``value`` in [0, 1), before learning it.

        Also sets ``last_evidence`` (the z-score of each kind), ``direction`` (+1 above
        the slow mean, -1 below) and ``directions``, the side each kind of evidence points to
        (``extreme``: the value against the slow mean; ``shift``: the recent bias of the
        predictor; ``level``: the fast average against the slow one; ``trend``: up).
        """
        raw, residual = self._pending = self.evidence(timestamp, value)
        if self.n:
            slow_mean = self.slow.mean
            res = self.residual
            self.direction = direction = math.copysign(1.0, value - slow_mean)
            self.directions = {
                "extreme": direction,
                "shift": math.copysign(1.0, res.mean + res.alpha * (residual - res.mean)),
                "level": math.copysign(1.0, 0.25 * value + 0.75 * self.fast.mean - slow_mean),
                "trend": 1.0,
            }
        else:
            self.direction = 0.0
            self.directions = {}
        if not self.ready:
            self.last_evidence = dict.fromkeys(self.kinds, 0.0)
            return 0.0
        likelihoods = self.likelihoods
        self.last_evidence = evidence = {k: likelihoods[k].score_one(v) for k, v in raw.items()}
        return squash(max(WEIGHTS[k] * z for k, z in evidence.items()))

    def learn_one(self, timestamp: float, value: float) -> None:
        """Learn ``value`` (after :meth:`score_one` on the same value, or on its own)."""
        raw, residual = self._pending or self.evidence(timestamp, value)
        self._pending = None
        n, last = self.n, self.last
        if n >= self.warmup:
            likelihoods = self.likelihoods
            for kind, x in raw.items():
                likelihoods[kind].learn_one(x)
        errors = self.errors
        for k, p in self._predictions(timestamp).items():
            errors[k].update(abs(value - p))
        if n:
            self.residual.update(residual)
        if self.steps is not None and self.step_size is not None and last is not None:
            limit = TREND_CLIP * self._typical_step()
            self.steps.update(min(max(value - last, -limit), limit))
            self.step_size.update(abs(value - last))
        profile = self.profile
        slot = int((timestamp % _DAY_S) / _DAY_S * _SLOTS)
        old = profile[slot]
        profile[slot] = value if old is None else old + 0.1 * (value - old)
        high, low = self.high, self.low
        if high is None or low is None:
            self.high = self.low = value
        else:
            pull, slow_mean = self.range_pull, self.slow.mean
            self.high = max(value, high - pull * (high - slow_mean))
            self.low = min(value, low + pull * (slow_mean - low))
        self.fast.update(value)
        self.slow.update(value)
        self.last = value
        self.n = n + 1

    # -- pickling --------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, object]:
        # The attributes, with each EWStats and Likelihood as its plain values (as_tuple):
        # a VM's detectors hold ~80 EWStats, and tuples of numbers pickle about twice as fast
        # as the objects. "_tuples" marks this format for __setstate__.
        state = dict(self.__dict__)
        for name in _EWSTATS_ATTRS:
            stats = state[name]
            if stats is not None:
                state[name] = stats.as_tuple()
        state["errors"] = {k: e.as_tuple() for k, e in self.errors.items()}
        state["likelihoods"] = {k: lik.as_tuple() for k, lik in self.likelihoods.items()}
        state["_tuples"] = True
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        if state.pop("_tuples", False):  # as __getstate__ gives it; before, as the objects
            for name in _EWSTATS_ATTRS:
                if state.get(name) is not None:
                    state[name] = EWStats.from_tuple(state[name])
            state["errors"] = {k: EWStats.from_tuple(s) for k, s in state["errors"].items()}
            state["likelihoods"] = {k: Likelihood.from_tuple(s)
                                    for k, s in state["likelihoods"].items()}
        # Detectors pickled before ``trend`` existed load without it.
        self.__dict__.update(state)
        self.__dict__.setdefault("kinds", EVIDENCE)
        self.__dict__.setdefault("steps", None)
        self.__dict__.setdefault("step_size", None)
        self.__dict__.setdefault("directions", {})
