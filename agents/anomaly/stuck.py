"""Stuck agent: a run of samples that repeat the previous one exactly in every metric.

A live VM's samples almost never repeat exactly in every metric at once; an agent that is stuck
re-sends its last reading. With ``q`` the VM's own rate of such all-repeat steps (an
exponentially weighted mean with half-life :data:`HALFLIFE_STEPS`, floored at :data:`FLOOR` so
that a VM that never repeats still needs a few repeats, capped at :data:`CEILING`) and ``k`` the
length of the current run, the chance of a run this long is ``q ** k``: the evidence, in decades,
is ``-k * log10(q)``. A VM whose metrics sit at exact zeros half the time has a high ``q`` and
needs a much longer run. (A geometric run test: the runs of a Bernoulli process.) A run is
judged by the rate as it stood when the run began, so that a stuck agent does not teach the
test, while it lasts, that repeats are common.

State per row: the rate, the rate when the current run began, the number of steps seen and the
current run.

>>> import numpy as np
>>> run = StuckRun(rows=1)
>>> for i in range(300):
...     run.learn_many([0], [i % 50 == 0])
>>> [round(float(run.score_many([0], [k])[0]), 1) for k in (0, 1, 3)]
[0.0, 1.7, 5.1]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from agents.anomaly._jit import kernel

FloatArray = npt.NDArray[np.float64]

HALFLIFE_STEPS = 2000.0
FLOOR = 1e-3
CEILING = 0.99


@kernel
def _learn(rate, base, steps, run, rows, repeated, alpha):
    for k in range(rows.shape[0]):
        r = rows[k]
        if repeated[k] and run[r] == 0:
            base[r] = rate[r]  # a run begins: judged by the rate before it
        a = max(alpha, 1.0 / (steps[r] + 1.0))
        rate[r] += a * ((1.0 if repeated[k] else 0.0) - rate[r])
        steps[r] += 1
        run[r] = run[r] + 1 if repeated[k] else 0


class StuckRun:
    """How surprising a run of exact repeats is, given the row's own rate of repeats."""

    def __init__(self, rows: int = 1, *, halflife_steps: float = HALFLIFE_STEPS,
                 floor: float = FLOOR, ceiling: float = CEILING) -> None:
        self.alpha = 1.0 - 0.5 ** (1.0 / halflife_steps)
        self.floor, self.ceiling = floor, ceiling
        self.rate = np.zeros(rows)
        #: the rate when the current run began
        self.base = np.zeros(rows)
        self.steps = np.zeros(rows, dtype=np.int64)
        #: the current run of all-repeat steps
        self.run = np.zeros(rows, dtype=np.int64)

    def score_many(self, idx: npt.ArrayLike, run: npt.ArrayLike) -> FloatArray:
        """Evidence in decades of a run of ``run`` all-repeat steps (0 for none)."""
        rows = np.asarray(idx, dtype=np.int64)
        rate = np.where(self.run[rows] > 0, self.base[rows], self.rate[rows])
        q = np.minimum(np.maximum(rate, self.floor), self.ceiling)
        return np.asarray(-np.asarray(run, dtype=np.float64) * np.log10(q))

    def next_run(self, idx: npt.ArrayLike, repeated: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """The run length once a step that ``repeated`` (or not) is added."""
        rows = np.asarray(idx, dtype=np.int64)
        return np.asarray((self.run[rows] + 1) * np.asarray(repeated, dtype=bool))

    def learn_many(self, idx: npt.ArrayLike, repeated: npt.ArrayLike) -> None:
        _learn(self.rate, self.base, self.steps, self.run, np.asarray(idx, dtype=np.int64),
               np.asarray(repeated, dtype=np.bool_), self.alpha)
