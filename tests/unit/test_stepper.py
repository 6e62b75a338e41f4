"""Stepping many VMs' detectors together (agents.stepper, agents.anomaly.pool) gives the
outputs and states of one event at a time, through pools that grow, and states that come
and go."""

from __future__ import annotations

import pickle
from typing import Any

from agents.anomaly.pool import DetectorPool
from agents.pipeline import PipelineConfig, new_state, process_event
from agents.stepper import step_events
from schemas.records import MetricEvent


def test_batched_detectors_give_the_outputs_and_states_of_one_event_at_a_time(
        fleet_slice: list[dict[str, Any]]) -> None:
    cfg = PipelineConfig()
    events = [MetricEvent.from_dict(m) for m in fleet_slice]
    events = events[:700] + events[650:700] + events[700:]  # redelivered: late, not learned
    one = {vm: new_state(cfg) for vm in {e.vm_id for e in events}}
    expected = [process_event(one[e.vm_id], e, cfg) for e in events]

    many = {vm: new_state(cfg) for vm in one}
    pool = DetectorPool(cfg.metrics, capacity=1)  # grows while attached
    got = []
    for start, size in ((0, 1), (1, 37), (38, 500), (538, 3), (541, len(events))):
        got.extend(step_events([(many[e.vm_id], e) for e in events[start:start + size]],
                               cfg, pool))
        if start == 538:  # a VM leaves the pool and comes back (as after a cache drop)
            many["vm-002"].detector.detach()
    assert len(got) == len(expected)
    assert got == expected
    assert sum(o.detection is not None and o.detection.score > 0 for o in got) > 100
    for vm, state in many.items():
        assert state.detector.pool is pool
        assert pickle.dumps(state) == pickle.dumps(one[vm]), vm


def test_an_attached_detector_pickles_as_its_own_rows(
        fleet_slice: list[dict[str, Any]]) -> None:
    cfg = PipelineConfig()
    events = [MetricEvent.from_dict(m) for m in fleet_slice if m["vm_id"] == "vm-001"]
    state, pool = new_state(cfg), DetectorPool(cfg.metrics)
    for e in events[:250]:
        step_events([(state, e)], cfg, pool)
    restored = pickle.loads(pickle.dumps(state))
    assert restored.detector.pool is None and state.detector.pool is pool
    copied = pickle.loads(pickle.dumps(state))
    before = len(pool)
    copied.detector.attach(pool)
    assert len(pool) == before + 1
    for e in events[250:]:  # alone, attached, and attached to a second slot: the same
        expected = process_event(restored, e, cfg)
        assert step_events([(state, e), (copied, e)], cfg, pool) == [expected, expected]
    state.detector.detach()
    assert len(pool) == before
