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
from agents.pipeline import Outputs, PipelineConfig, Step, VMState, begin_event, finish_event
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
                hosts: Mapping[str, HostState] | None = None) -> list[Outputs]:
    """Each (state, event) through the pipeline, the detectors of a round's VMs stepped in
    one call on ``pool`` (a state's detector is attached to it if it is not yet); the
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
            begun.append((i, state, step))
        if not begun:
            continue
        slots = np.array([state.detector.slot for _, state, _ in begun], dtype=np.int64)
        t = np.array([step.ev.timestamp for _, _, step in begun])
        x = np.array([[step.values[m] for m in pool.metrics] for _, _, step in begun])
        scores = pool.step(slots, t, x)
        for k, (i, state, step) in enumerate(begun):
            outs[i] = finish_event(state, step, cfg, fleet, hosts,
                                   raw=verdict_of(pool.fleet, scores, k))
    return outs
