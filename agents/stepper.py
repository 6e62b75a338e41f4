"""Many VMs' events through the pipeline with their detectors stepped together.

:func:`step_events` gives the same outputs and states as :func:`agents.pipeline.process_event`
on each event in turn. The events are split into *rounds* in which each VM appears at most
once (a VM's second event of the batch goes to the second round, and so on); within a round
every VM's features are updated, then all their detectors score and learn in one call on a
:class:`~agents.anomaly.pool.DetectorPool`, then each event's incidents, forecasts and scaling
advice follow. VMs are independent of each other within a batch, so the order across VMs does
not change any output; the outputs come back in the order of the events.

>>> from agents.anomaly.pool import DetectorPool
>>> from agents.pipeline import PipelineConfig, new_state
>>> from schemas.records import MetricEvent
>>> cfg = PipelineConfig()
>>> pool = DetectorPool(cfg.metrics)
>>> a, b = new_state(cfg), new_state(cfg)
>>> evs = [MetricEvent(vm, "h-1", t, 30.0, 1e9, 4e9, 2, 0.0, 0.0, 1e5, 2e5)
...        for t in (0.0, 60.0) for vm in ("vm-a", "vm-b")]
>>> outs = step_events([(a, evs[0]), (b, evs[1]), (a, evs[2]), (b, evs[3])], cfg, pool)
>>> [len(o.forecasts) for o in outs], len(pool), a.events_total
([0, 0, 6, 6], 2, 2)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from agents.anomaly.feedback import ClassSensitivity
from agents.anomaly.pool import DetectorPool
from agents.anomaly.vm import verdict_of
from agents.forecasting.fleet import ForecasterPool
from agents.forecasting.series import SeriesView
from agents.pipeline import (
    Outputs,
    PipelineConfig,
    Step,
    VMState,
    begin_event,
    finish_event,
    forecasts_due,
)
from agents.scaling.placement import HostState
from schemas.records import MetricEvent


def rounds(keys: Sequence[object]) -> list[list[int]]:
    """The positions of ``keys`` split into rounds in which each key appears at most once,
    in order: the n-th occurrence of a key is in round n.

    >>> rounds(["a", "b", "a", "a", "c"])
    [[0, 1, 4], [2], [3]]
    """
    seen: dict[object, int] = {}
    out: list[list[int]] = []
    for i, key in enumerate(keys):
        r = seen.get(key, 0)
        seen[key] = r + 1
        if r == len(out):
            out.append([])
        out[r].append(i)
    return out


def step_events(events: Sequence[tuple[VMState, MetricEvent]], cfg: PipelineConfig,
                pool: DetectorPool, fleet: ClassSensitivity | None = None,
                hosts: Mapping[str, HostState] | None = None,
                forecasters: ForecasterPool | None = None) -> list[Outputs]:
    """Each (state, event) through the pipeline, the detectors of a round's VMs stepped in
    one call on ``pool`` (a state's detector is attached to it if it is not yet), and their
    forecasters likewise on ``forecasters`` if given (else each VM's on its own); the
    outputs in the order of ``events``."""
    outs = [Outputs() for _ in events]  # a late event keeps its empty one
    for positions in rounds([id(state) for state, _ in events]):
        begun: list[tuple[int, VMState, Step]] = []
        for i in positions:
            state, ev = events[i]
            step = begin_event(state, ev, cfg)
            if step is None:
                continue
            det = state.detector
            if det.pool is not pool:
                det.detach()
                det.attach(pool)
            if forecasters is not None and state.forecasters.pool is not forecasters:
                state.forecasters.detach()
                state.forecasters.attach(forecasters)
            begun.append((i, state, step))
        if not begun:
            continue
        slots = np.array([state.detector.slot for _, state, _ in begun], dtype=np.int64)
        t = np.array([step.ev.timestamp for _, _, step in begun])
        x = np.array([[step.values[m] for m in pool.metrics] for _, _, step in begun])
        scores = pool.step(slots, t, x)
        drifted = (_learn_forecasts(begun, t, cfg, forecasters) if forecasters is not None
                   else [None] * len(begun))
        for k, (i, state, step) in enumerate(begun):
            outs[i] = finish_event(state, step, cfg, fleet, hosts,
                                   raw=verdict_of(pool.fleet, scores, k), drifted=drifted[k])
    return outs


#: The forecasts scaling advice reads on every sample.
_SCALING_METRICS = ("cpu_pct", "memory_used_bytes")


def _learn_forecasts(begun: list[tuple[int, VMState, Step]], t: np.ndarray,
                     cfg: PipelineConfig, forecasters: ForecasterPool) -> list[list[str] | None]:
    """Learn a round's samples in every VM's forecasters in one call on ``forecasters``, then
    compute, in one more, the forecasts the round will read: every metric's of the VMs due to
    publish theirs, and cpu and memory's for scaling advice. Per VM, the metrics whose
    errors drifted."""
    fcs = [state.forecasters for _, state, _ in begun]
    m = len(cfg.metrics)
    fleet = forecasters.fleet
    res = fleet.learn_many(np.concatenate([fc.rows for fc in fcs]), np.repeat(t, m),
                           np.array([step.values[name] for _, _, step in begun
                                     for name in cfg.metrics]))
    drifted: list[list[str] | None] = [fc.learned(res[k * m:(k + 1) * m])
                                       for k, fc in enumerate(fcs)]
    views: list[tuple[SeriesView, float]] = []
    scaling = _SCALING_METRICS if cfg.scales else ()
    for k, (_, state, step) in enumerate(begun):
        series = fcs[k].series
        names = cfg.metrics if forecasts_due(state, step.ev, cfg) else scaling
        views.extend((series[name], float(t[k])) for name in names)
    if views:
        out, chosen = fleet.forecast_many(np.array([v.row for v, _ in views], dtype=np.int64),
                                          np.array([ts for _, ts in views]))
        for (view, ts), o, c in zip(views, out.tolist(), chosen.tolist(), strict=True):
            view.remember(ts, o, c)
    return drifted
