"""Batch processing without Kafka: validation, accounting, re-keying, state write-back."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator
from prometheus_client import CollectorRegistry

from agents.anomaly.incidents import incident_id
from agents.pipeline import PipelineConfig, new_state, process_event
from agents.processor import Inbound, MetricsProcessor
from agents.state_layout import state_codec
from schemas.records import MetricEvent, to_json
from schemas.registry import schema_for
from streams.observability import WorkerMetrics

NOW = 1.9e9


def make_processor(store: dict[bytes, bytes]) -> MetricsProcessor:
    return MetricsProcessor(PipelineConfig(), state_codec(b"k"),
                            load_state=store.get, metrics=WorkerMetrics(CollectorRegistry()))


def inbound(msgs: list[dict[str, Any]], start_offset: int = 0) -> list[Inbound]:
    return [Inbound(m["vm_id"].encode(), orjson.dumps(m), "vm.metrics", 0, start_offset + i)
            for i, m in enumerate(msgs)]


def test_every_message_is_processed_dead_lettered_or_rekeyed(
        fleet_slice: list[dict[str, Any]]) -> None:
    batch = inbound(fleet_slice[:300])
    batch[10] = Inbound(b"vm-001", b"{broken", "vm.metrics", 0, 10)
    batch[20] = Inbound(b"vm-001", orjson.dumps({**fleet_slice[20], "cpu_pct": -1}),
                        "vm.metrics", 0, 20)
    batch[30] = Inbound(None, orjson.dumps(fleet_slice[30]), "vm.metrics", 3, 30)
    proc = make_processor({})
    result = proc.process(batch, now=NOW)
    assert result.processed + len(result.deadletters) + len(result.rekeyed) == len(batch)
    assert (len(result.deadletters), len(result.rekeyed)) == (2, 1)
    assert result.rekeyed[0] == (fleet_slice[30]["vm_id"].encode(), batch[30].value)
    reasons = [orjson.loads(v)["reason"] for _, v in result.deadletters]
    assert reasons == ["not_json", "negative_value"]
    dl = orjson.loads(result.deadletters[0][1])
    assert base64.b64decode(dl["payload_b64"]) == b"{broken"
    assert (dl["source_partition"], dl["source_offset"]) == (0, 10)
    registry = proc.metrics.registry
    assert registry.get_sample_value("novacron_events_processed_total") == result.processed
    assert registry.get_sample_value("novacron_events_deadlettered_total",
                                     {"reason": "not_json"}) == 1
    for topic, records in (("vm.deadletter", result.deadletters),
                           ("vm.forecasts", result.forecasts),
                           ("vm.alerts", result.alerts),
                           ("vm.recommendations", result.recommendations)):
        validator = Draft202012Validator(schema_for(topic))
        for _, value in records:
            validator.validate(orjson.loads(value))


def test_states_are_written_once_per_vm_in_the_partition_of_its_messages(
        fleet_slice: list[dict[str, Any]]) -> None:
    batch = [Inbound(m["vm_id"].encode(), orjson.dumps(m), "vm.metrics",
                     int(m["vm_id"][-1]) % 3, i) for i, m in enumerate(fleet_slice[:100])]
    result = make_processor({}).process(batch, now=NOW)
    assert set(result.states) == {m["vm_id"].encode() for m in fleet_slice[:100]}
    for key, (partition, _) in result.states.items():
        assert partition == int(key.decode()[-1]) % 3


def test_with_a_flush_interval_states_wait_unless_the_batch_published_an_alert(
        fleet_slice: list[dict[str, Any]]) -> None:
    spiked = [dict(m, cpu_pct=100.0, net_rx_bytes_per_s=5e8) if m["vm_id"] == "vm-002" else m
              for m in fleet_slice[1200:1220]]
    proc = MetricsProcessor(PipelineConfig(), state_codec(b"k"), load_state={}.get,
                            metrics=WorkerMetrics(CollectorRegistry()), state_flush_s=10.0)
    first = proc.process(inbound(fleet_slice[:1200]), now=NOW)
    assert set(first.states) <= {b"vm-001", b"vm-002", b"vm-003", b"vm-004"}
    proc.flush(NOW, everything=True)
    assert not proc.dirty and proc.settled("vm.metrics", 0, 1200) == 1200
    quiet = proc.process(inbound(spiked, 1200), now=NOW + 1)
    alerted = {orjson.loads(v)["vm_id"].encode() for _, v in quiet.alerts}
    assert alerted == {b"vm-002"}, "the spike opened an incident"
    published = alerted | {orjson.loads(v)["vm_id"].encode()
                           for _, v in quiet.recommendations + quiet.drifts}
    # written at once: a worker taking over never publishes these alerts (recommendations,
    # drift events) again
    assert set(quiet.states) == published
    waiting = {b"vm-001", b"vm-002", b"vm-003", b"vm-004"} - published
    assert set(proc.dirty) == waiting and waiting, "the others wait for their time"
    # The mark: the first message whose state is unwritten; input from there is read again
    # by a worker that takes the partition over.
    first_unwritten = min(1200 + i for i, m in enumerate(spiked)
                          if m["vm_id"].encode() in waiting)
    assert proc.settled("vm.metrics", 0, 1220) == first_unwritten
    assert proc.settled("vm.metrics", 1, 77) == 77, "nothing waits in another partition"
    later = proc.process(inbound(fleet_slice[1220:1224], 1220), now=NOW + 5)
    assert not set(later.states) & waiting, "not due yet"
    due = proc.process(inbound(fleet_slice[1224:1228], 1224), now=NOW + 11)
    assert waiting <= set(due.states), "due 10 s after they first changed"
    assert proc.settled("vm.metrics", 0, 1228) >= 1220
    proc.process(inbound(fleet_slice[1228:1240], 1228), now=NOW + 12)
    assert proc.dirty
    assert not proc.flush(NOW + 13).states, "the timer writes only what is due"
    timer = proc.flush(NOW + 22.5)
    assert timer.states and not proc.dirty
    assert proc.settled("vm.metrics", 0, 1240) == 1240


def test_batches_give_the_same_outputs_and_states_as_one_event_at_a_time(
        fleet_slice: list[dict[str, Any]]) -> None:
    """The agent takes up to NOVACRON_BATCH_MAX_EVENTS at once: on a real trace, what it
    publishes and learns does not depend on how the stream was cut into batches."""
    msgs = fleet_slice[:1500]  # each VM is past its warm-up (300 samples) from message 1200
    msgs[1300:1306] = [dict(m, cpu_pct=100.0) for m in msgs[1300:1306]]  # an incident or two
    runs = []
    for size in (1, 7, 500):
        proc = make_processor({})
        out: dict[str, list[tuple[bytes, bytes]]] = {}
        for i in range(0, len(msgs), size):
            result = proc.process(inbound(msgs[i:i + size], i), now=NOW)
            for name in ("alerts", "forecasts", "recommendations", "drifts", "host_reports"):
                out.setdefault(name, []).extend(getattr(result, name))
        states = {k: proc.codec.dumps(v, subject=k) for k, v in proc.cache.items()}
        runs.append((out, states))
    assert runs[0][0]["alerts"] and runs[0][0]["forecasts"]
    assert runs[0] == runs[1] == runs[2]


def test_a_restarted_processor_continues_from_the_table(fleet_slice: list[dict[str, Any]]
                                                        ) -> None:
    """Outputs after a restart (cache lost, state read back from the table) equal those of
    an uninterrupted run."""
    first, second = inbound(fleet_slice[:400]), inbound(fleet_slice[400:], 400)
    store: dict[bytes, bytes] = {}
    proc = make_processor(store)
    store.update({k: v for k, (_, v) in proc.process(first, now=NOW).states.items()})
    proc.forget()
    resumed = proc.process(second, now=NOW)
    uninterrupted = make_processor({})
    uninterrupted.process(first, now=NOW)
    expected = uninterrupted.process(second, now=NOW)
    assert resumed.alerts == expected.alerts
    assert resumed.forecasts == expected.forecasts
    assert resumed.recommendations == expected.recommendations


def test_tampered_state_is_refused_and_the_vm_starts_afresh(
        fleet_slice: list[dict[str, Any]], caplog: pytest.LogCaptureFixture) -> None:
    proc = make_processor({})
    result = proc.process(inbound(fleet_slice[:50]), now=NOW)
    key, (_, good) = next(iter(result.states.items()))
    tampered = good[:-1] + bytes([good[-1] ^ 1])
    fresh = make_processor({key: tampered})
    fresh.process(inbound([m for m in fleet_slice[50:60] if m["vm_id"] == key.decode()]),
                  now=NOW)
    assert fresh.metrics.registry.get_sample_value("novacron_state_load_failures_total") == 1
    assert "refusing stored state" in caplog.text


def test_incident_ids_are_deterministic(fleet_slice: list[dict[str, Any]]) -> None:
    """Reprocessing the same events opens the same incidents with the same ids."""
    cfg = PipelineConfig(alert_threshold=0.4)  # VM 1's bursty cpu: a spike is 13 decades
    events = [MetricEvent.from_dict(m) for m in fleet_slice if m["vm_id"] == "vm-001"]
    events[320:325] = [dataclasses.replace(e, cpu_pct=100.0) for e in events[320:325]]
    runs = []
    for _ in range(2):
        state = new_state(cfg)
        runs.append([a for e in events for a in process_event(state, e, cfg).alerts])
    assert runs[0] == runs[1]
    opened = [a for a in runs[0] if a.status == "open"]
    assert opened, "the injected spike opened no incident"
    spike = [a for a in opened if events[320].timestamp <= a.timestamp <= events[324].timestamp]
    assert spike and spike[0].incident_id == incident_id("vm-001", spike[0].anomaly_class,
                                                         spike[0].started_at)
    assert len({a.incident_id for a in opened}) == len(opened)
    for a in runs[0]:
        Draft202012Validator(schema_for("vm.alerts")).validate(orjson.loads(to_json(a)))



def test_the_host_directory_is_decoded_only_when_placement_reads_it(
        caplog: pytest.LogCaptureFixture) -> None:
    from agents.scaling.placement import HostState

    table = {b"h1": HostState("h1", 16.0, 64e9).to_json(), b"h2": b"{not json"}
    proc = MetricsProcessor(PipelineConfig(), state_codec(b"k"), load_state={}.get,
                            metrics=WorkerMetrics(CollectorRegistry()),
                            load_hosts=lambda: list(table.items()))
    hosts = proc.hosts()
    assert hosts is not None
    assert all(host is None for _, host in proc._hosts.values()), "nothing decoded yet"
    assert hosts["h1"].cpu_cores == 16.0
    assert "h2" not in hosts and list(hosts) == ["h1"] and len(hosts) == 1
    assert caplog.text.count("unreadable host-directory entry h2") == 1
    again = proc.hosts()
    assert again is not None and list(again) == ["h1"], "h1 kept decoded, h2 still out"
    assert caplog.text.count("unreadable host-directory entry h2") == 1, "logged once"
    table[b"h1"] = HostState("h1", 32.0, 64e9).to_json()
    changed = proc.hosts()
    assert changed is not None and changed["h1"].cpu_cores == 32.0


def test_a_burst_of_due_states_is_written_over_several_batches(
        fleet_slice: list[dict[str, Any]]) -> None:
    """300 VMs that started together come due together: each batch writes at most a quarter
    of its events' worth of them (at least 32), oldest first, and the timer a chunk at a
    time, until every one is written."""
    from agents.processor import MIN_WRITES_PER_BATCH

    sample = fleet_slice[0]
    fleet = [dict(sample, vm_id=f"vm-{i:03d}", timestamp=sample["timestamp"] + 0.01 * i)
             for i in range(300)]
    proc = MetricsProcessor(PipelineConfig(), state_codec(b"k"), load_state={}.get,
                            metrics=WorkerMetrics(CollectorRegistry()), state_flush_s=10.0)
    proc.process(inbound(fleet), now=NOW)
    assert len(proc.dirty) == 300
    later = [dict(m, timestamp=m["timestamp"] + 10.0) for m in fleet[:200]]
    written: list[bytes] = []
    for i in range(0, 200, 40):
        result = proc.process(inbound(later[i:i + 40], 300 + i), now=NOW + 11)
        assert len(result.states) == MIN_WRITES_PER_BATCH  # 40 events: the minimum
        written += list(result.states)
    assert written == [m["vm_id"].encode() for m in fleet[:160]], "oldest first"
    timer = proc.flush(NOW + 12, limit=64)
    assert len(timer.states) == 64
    while proc.dirty:
        assert proc.flush(NOW + 12, limit=64).states
    assert proc.settled("vm.metrics", 0, 500) == 500
