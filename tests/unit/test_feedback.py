"""Operator feedback: the learners (Sensitivity, RecentIncidents, ClassSensitivity) and the
processor's handling of vm.feedback batches, without Kafka."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator
from prometheus_client import CollectorRegistry

from agents.anomaly.feedback import (
    ClassSensitivity,
    IncidentRecord,
    RecentIncidents,
    Sensitivity,
    z_for_score,
)
from agents.anomaly.likelihood import squash
from agents.pipeline import PipelineConfig, VMState, new_state
from agents.processor import Inbound, MetricsProcessor, fleet_key
from agents.state_layout import state_codec
from schemas.registry import schema_for
from streams.observability import WorkerMetrics
from streams.traces import bitbrains_files, read_vm

DAY = 86400.0
Z_THR = z_for_score(0.4)
NOW = 2.0e9
DISK, NET = "disk_write_bytes_per_s", "net_tx_bytes_per_s"


def record(start: float, end: float, peaks: dict[tuple[str, str], float],
           cls: str = "io_bottleneck") -> IncidentRecord:
    rec = IncidentRecord(f"vm-1/{cls}/{int(start)}", cls, start)
    rec.ended_at = end
    rec.peaks = dict(peaks)
    return rec


# ------------------------------------------------------------------------------ learners


def test_z_for_score_inverts_the_squash() -> None:
    for score in (0.1, 0.4, 0.75):
        assert squash(z_for_score(score)) == pytest.approx(score)


def test_false_positive_holds_back_the_same_metrics_at_the_same_time_of_day() -> None:
    sens = Sensitivity()
    sens.false_positive(record(2 * 3600.0, 2.75 * 3600.0, {(DISK, "level"): 10.0,
                                                             (NET, "shift"): 9.0,
                                                             ("cpu_pct", "level"): 1.0}),
                        Z_THR, now=3 * 3600.0)
    next_night = DAY + 2.5 * 3600.0
    # The same metrics, any kind of evidence, as strong or up to the margin stronger: held.
    for key, z in (((DISK, "level"), 10.0), ((DISK, "extreme"), 14.0), ((NET, "shift"), 12.0)):
        assert sens.adjust({key: z}, next_night, Z_THR)[key] < Z_THR, key
    # Much stronger than what the operator called benign: still an anomaly.
    assert sens.adjust({(DISK, "level"): 40.0}, next_night, Z_THR)[(DISK, "level")] > Z_THR
    # Another metric (cpu stayed quiet in the false positive) or another time: untouched.
    cpu = {("cpu_pct", "extreme"): 12.0}
    assert sens.adjust(cpu, next_night, Z_THR) is cpu
    noon = {(DISK, "level"): 10.0}
    assert sens.adjust(noon, DAY + 12 * 3600.0, Z_THR) is noon
    # Half an hour of slack either side of the incident's span.
    assert sens.bar(DISK, DAY + 1.6 * 3600.0) > 1.0
    assert sens.bar(DISK, DAY + 4.1 * 3600.0) == 1.0


def test_bars_decay_slowly_unless_the_benign_pattern_recurs() -> None:
    sens = Sensitivity(halflife_s=30 * DAY)
    sens.false_positive(record(7200.0, 9000.0, {(DISK, "level"): 10.0}), Z_THR, now=9000.0)
    start = sens.bar(DISK, 7200.0)
    assert start == pytest.approx(Sensitivity().margin * 10.0 / Z_THR)
    assert sens.bar(DISK, 30 * DAY + 7200.0) == pytest.approx(1 + (start - 1) / 2, rel=1e-3)
    assert sens.bar(DISK, 400 * DAY + 7200.0) == pytest.approx(1.0, abs=1e-3)
    # A held-back repeat restarts the clock: the bar stays while the pattern recurs.
    kept = Sensitivity(halflife_s=30 * DAY)
    kept.false_positive(record(7200.0, 9000.0, {(DISK, "level"): 10.0}), Z_THR, now=9000.0)
    for day in range(1, 120):
        kept.adjust({(DISK, "level"): 9.0}, day * DAY + 7200.0, Z_THR)
    assert kept.bar(DISK, 119 * DAY + 7200.0) == pytest.approx(start)


def test_confirmed_verdicts_add_a_little_bounded_sensitivity_and_lower_bars() -> None:
    sens = Sensitivity(confirm_step=0.05, max_gain=1.2)
    fp = record(7200.0, 9000.0, {(DISK, "level"): 10.0})
    sens.false_positive(fp, Z_THR, now=9000.0)
    bar = sens.bar(DISK, 7200.0)
    sens.confirmed(record(7200.0, 9000.0, {(DISK, "extreme"): 12.0}), Z_THR, now=9000.0)
    assert 1.0 < sens.bar(DISK, 7200.0) < bar
    for i in range(50):
        sens.confirmed(record(50000.0, 50300.0, {("cpu_pct", "extreme"): 12.0}, "cpu_spike"),
                       Z_THR, now=50300.0 + i)
    assert sens.gain("cpu_pct", 60000.0) == pytest.approx(1.2, abs=1e-3)
    # Evidence far below the threshold was not what the operator confirmed.
    sens.confirmed(record(7200.0, 9000.0, {("memory_used_bytes", "level"): 1.0}), Z_THR, 9000.0)
    assert sens.gain("memory_used_bytes", 9000.0) == 1.0


def test_a_redelivered_verdict_changes_nothing() -> None:
    sens = Sensitivity()
    rec = record(7200.0, 9000.0, {("cpu_pct", "extreme"): 12.0}, "cpu_spike")
    assert sens.learn(rec, "confirmed", Z_THR, 9000.0)
    gain = sens.gain("cpu_pct", 9000.0)
    assert not sens.learn(rec, "confirmed", Z_THR, 9000.0)
    assert sens.gain("cpu_pct", 9000.0) == gain
    assert sens.learn(rec, "false_positive", Z_THR, 9000.0)  # a changed mind is applied
    assert sens.gain("cpu_pct", 9000.0) == 1.0
    with pytest.raises(ValueError, match="unknown verdict"):
        sens.learn(rec, "maybe", Z_THR, 9000.0)


def test_feedback_memories_are_bounded() -> None:
    recent = RecentIncidents(capacity=32, keys=8)
    for i in range(100):
        evidence = {(f"m{j}", "level"): float(j) for j in range(20)}
        recent.note(f"vm-1/unknown/{i}", "unknown", float(i), evidence)
    assert len(recent) == 32
    assert recent.get("vm-1/unknown/0") is None and recent.get("vm-1/unknown/99") is not None
    assert len(recent.get("vm-1/unknown/99").peaks) == 8  # type: ignore[union-attr]
    sens = Sensitivity(max_cells=256)
    for i in range(200):  # false positives all day long, on many metrics
        sens.false_positive(record(i * 3000.0, i * 3000.0 + 20000.0,
                                   {(f"m{i % 12}", "level"): 20.0}), Z_THR, now=i * 3000.0)
    assert len(sens.cells) <= 256


def test_class_sensitivity_is_a_small_bounded_factor() -> None:
    fleet = ClassSensitivity(weight=0.15)
    for i in range(1000):
        fleet.record("io_bottleneck", "false_positive", float(i))
        fleet.record("cpu_spike", "confirmed", float(i))
    assert 1.0 < fleet.factor("io_bottleneck") <= 1.15
    assert 0.85 <= fleet.factor("cpu_spike") < 1.0
    assert fleet.factor("memory_leak") == 1.0
    a, b = ClassSensitivity(), ClassSensitivity()
    a.record("flatline", "false_positive", 0.0)
    b.record("flatline", "false_positive", 30 * DAY)
    merged = ClassSensitivity.merged([a, b])
    fp, ok, t = merged.counts["flatline"]
    assert (fp, ok, t) == (pytest.approx(1.5), 0.0, 30 * DAY)  # the older one decayed by half
    with pytest.raises(ValueError):
        a.record("flatline", "maybe", 0.0)


def test_states_pickled_before_feedback_existed_still_load() -> None:
    state = new_state(PipelineConfig())
    old = pickle.loads(pickle.dumps(state))
    del old.__dict__["sensitivity"], old.__dict__["recent"]
    restored = pickle.loads(pickle.dumps(old))
    assert isinstance(restored, VMState)
    assert isinstance(restored.sensitivity, Sensitivity)
    assert isinstance(restored.recent, RecentIncidents)


# ----------------------------------------------------------------------------- processor


def make_processor(store: dict[bytes, bytes], fleet: dict[bytes, bytes] | None = None
                   ) -> MetricsProcessor:
    fleet = fleet if fleet is not None else {}
    return MetricsProcessor(PipelineConfig(), state_codec(b"k"), load_state=store.get,
                            metrics=WorkerMetrics(CollectorRegistry()),
                            load_fleet=lambda: list(fleet.items()))


def metric_batch(msgs: list[dict[str, Any]], offset: int = 0) -> list[Inbound]:
    return [Inbound(m["vm_id"].encode(), orjson.dumps(m), "vm.metrics", 0, offset + i)
            for i, m in enumerate(msgs)]


def verdict(incident_id: str, value: str = "false_positive", key: bytes | None = None,
            partition: int = 2, offset: int = 0) -> Inbound:
    body = {"incident_id": incident_id, "verdict": value, "timestamp": NOW,
            "note": "nightly backup"}
    vm = incident_id.split("/")[0].encode()
    return Inbound(vm if key is None else key, orjson.dumps(body), "vm.feedback", partition,
                   offset)


@pytest.fixture(scope="module")
def nightly_backup(bitbrains_dir: Path) -> tuple[list[dict[str, Any]], float]:
    """~4.5 days of VM 1 with a nightly backup at 02:00 for 45 min: disk writes and network
    transmit up by 30 MB/s the first night, twice as much each night (the data grows; the
    detector learns a backup that stays the same by itself)."""
    msgs = list(read_vm(bitbrains_files(bitbrains_dir)[1], 1, limit=1300))
    day0 = msgs[0]["timestamp"] // DAY * DAY
    out = []
    for m in msgs:
        day, tod = divmod(m["timestamp"] - day0, DAY)
        if day >= 1 and 2 * 3600 <= tod < 2 * 3600 + 2700:
            extra = 3e7 * 2.0 ** (day - 1)
            m = {**m, DISK: m[DISK] + extra, NET: m[NET] + extra}
        out.append(m)
    return out, day0


def opened(alerts: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    return [a for a in (orjson.loads(v) for _, v in alerts) if a["status"] == "open"]


def test_a_false_positive_keeps_the_same_pattern_the_next_night_quiet(
        nightly_backup: tuple[list[dict[str, Any]], float]) -> None:
    msgs, day0 = nightly_backup
    cut = day0 + 2 * DAY + 4 * 3600  # after the second night's backup
    until_3 = day0 + 3 * DAY + 4 * 3600
    first = [m for m in msgs if m["timestamp"] < cut]
    night3 = [m for m in msgs if cut <= m["timestamp"] < until_3]
    store: dict[bytes, bytes] = {}
    proc = make_processor(store)
    result = proc.process(metric_batch(first), now=NOW)
    store.update({k: v for k, (_, v) in result.states.items()})
    backups = [a for a in opened(result.alerts)
               if day0 + 2 * DAY + 2 * 3600 <= a["started_at"] < cut]
    assert backups, "the second night's backup opened no incident: nothing to give feedback on"

    def backup_incidents_on_night_3(proc: MetricsProcessor) -> list[dict[str, Any]]:
        res = proc.process(metric_batch(night3, len(first)), now=NOW)
        return [a for a in opened(res.alerts)
                if day0 + 3 * DAY + 2 * 3600 <= a["started_at"] < until_3]

    control = make_processor(dict(store))
    assert backup_incidents_on_night_3(control), "without feedback the backup alerts again"

    fleet: dict[bytes, bytes] = {}
    treated = make_processor(dict(store), fleet)
    fb = treated.process_feedback([verdict(backups[0]["incident_id"], offset=7)], now=NOW)
    assert (fb.feedback, fb.deadletters, fb.rekeyed) == (1, [], [])
    assert list(fb.states) == [b"vm-001"] and fb.states[b"vm-001"][0] == 2  # its partition
    assert list(fb.fleet) == [fleet_key(2)]
    registry = treated.metrics.registry
    assert registry.get_sample_value("novacron_feedback_total",
                                     {"verdict": "false_positive"}) == 1
    fleet.update({k: v for k, (_, v) in fb.fleet.items()})
    assert treated.refresh_fleet().factor(backups[0]["anomaly_class"]) > 1.0
    assert backup_incidents_on_night_3(treated) == [], "the benign pattern alerted again"


def test_feedback_on_unknown_or_malformed_incidents_is_dead_lettered(
        nightly_backup: tuple[list[dict[str, Any]], float]) -> None:
    msgs, _ = nightly_backup
    store: dict[bytes, bytes] = {}
    proc = make_processor(store)
    proc.process(metric_batch(msgs[:400]), now=NOW)
    batch = [
        verdict("vm-001/cpu_spike/1372000000"),            # well-formed, never opened
        verdict("vm-999/cpu_spike/1372000000"),            # a VM this worker never saw
        verdict("inc-vm-0042-1761998400", key=b"vm-0042"),  # not an incident id
        Inbound(b"vm-001", b"{nope", "vm.feedback", 1, 3),
        Inbound(b"vm-001", orjson.dumps({"incident_id": "vm-001/cpu_spike/5",
                                         "verdict": "maybe", "timestamp": NOW}),
                "vm.feedback", 1, 4),
    ]
    result = proc.process_feedback(batch, now=NOW)
    reasons = [orjson.loads(v)["reason"] for _, v in result.deadletters]
    assert reasons == ["unknown_incident", "unknown_incident", "unknown_incident", "not_json",
                       "unknown_verdict"]
    assert (result.feedback, result.states, result.fleet) == (0, {}, {})
    assert b"vm-999" not in proc.cache, "an unknown VM must not get a state"
    validator = Draft202012Validator(schema_for("vm.deadletter"))
    for _, value in result.deadletters:
        validator.validate(orjson.loads(value))
    registry = proc.metrics.registry
    assert registry.get_sample_value("novacron_events_deadlettered_total",
                                     {"reason": "unknown_incident"}) == 3
    assert registry.get_sample_value("novacron_events_in_total",
                                     {"topic": "vm.feedback"}) == len(batch)


def test_feedback_keyed_otherwise_is_rekeyed_and_redelivery_is_harmless(
        nightly_backup: tuple[list[dict[str, Any]], float]) -> None:
    msgs, day0 = nightly_backup
    proc = make_processor({})
    result = proc.process(metric_batch([m for m in msgs if m["timestamp"] < day0 + 3 * DAY]),
                          now=NOW)
    incident = opened(result.alerts)[0]["incident_id"]
    wrong = verdict(incident, "confirmed", key=b"ops-console")
    res = proc.process_feedback([wrong], now=NOW)
    assert res.rekeyed == [(b"vm-001", wrong.value)] and res.feedback == 0
    first = proc.process_feedback([verdict(incident, "confirmed")], now=NOW)
    again = proc.process_feedback([verdict(incident, "confirmed", offset=1)], now=NOW)
    assert (first.feedback, again.feedback) == (1, 1)
    assert first.states and first.fleet
    assert (again.states, again.fleet) == ({}, {}), "a redelivered verdict rewrites nothing"
    assert proc.metrics.registry.get_sample_value("novacron_feedback_total",
                                                  {"verdict": "confirmed"}) == 2


def test_class_feedback_is_signed_and_added_up_over_partitions() -> None:
    codec = state_codec(b"k")
    a, b = ClassSensitivity(), ClassSensitivity()
    for i in range(4):
        a.record("io_bottleneck", "false_positive", float(i))
    b.record("io_bottleneck", "confirmed", 10.0)
    fleet = {fleet_key(0): codec.dumps(a, subject=fleet_key(0)),
             fleet_key(1): codec.dumps(b, subject=fleet_key(1)),
             fleet_key(2): state_codec(b"other").dumps(a, subject=fleet_key(2)),  # not ours
             fleet_key(3): codec.dumps(a, subject=fleet_key(0))}  # another partition's
    # (the last two are refused)
    proc = make_processor({}, fleet)
    merged = proc.refresh_fleet()
    assert merged.counts["io_bottleneck"][:2] == (pytest.approx(4.0, rel=1e-4),
                                                  pytest.approx(1.0, rel=1e-4))
    assert proc.metrics.registry.get_sample_value("novacron_state_load_failures_total") == 2
    assert proc.refresh_fleet() is merged, "unchanged table: nothing decoded again"
