"""Operator feedback through a real worker on the real broker: an incident read from
vm.alerts is answered on vm.feedback; the worker counts the verdict, writes the fleet-wide
class counts to its GlobalTable, and dead-letters what it cannot accept."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import jsonschema
import orjson

from agents.state_layout import state_codec
from schemas.registry import schema_for
from streams.settings import Settings
from tests.integration.helpers import WorkerProcess, produce, read_all, wait_for

FP = 'novacron_feedback_total{verdict="false_positive"}'


def dead(counters: dict[str, float], reason: str) -> float:
    return counters.get(f'novacron_events_deadlettered_total{{reason="{reason}"}}', 0.0)


def test_feedback_is_applied_counted_and_refused_when_unknown(
        cluster_settings: Callable[..., Settings],
        worker_factory: Callable[[Settings], WorkerProcess],
        fleet_slice: list[dict[str, Any]]) -> None:
    settings = cluster_settings(partitions=4)
    worker = worker_factory(settings)
    samples = [dict(m) for m in fleet_slice if m["vm_id"] == "vm-001"]
    for m in samples[340:346]:  # a CPU and network spike: an incident opens
        m["cpu_pct"] = 100.0
        m["net_rx_bytes_per_s"] = m["net_rx_bytes_per_s"] * 50 + 5e7
    asyncio.run(produce(settings.bootstrap_servers, settings.topic("vm.metrics"),
                        [(b"vm-001", orjson.dumps(m)) for m in samples]))
    wait_for(lambda: worker.counters().get("novacron_events_processed_total", 0)
             >= len(samples), 90, "the metrics to be processed")

    def read(topic: str, raw: bool = False) -> list[Any]:
        return asyncio.run(read_all(settings.bootstrap_servers, settings.topic(topic),
                                    settings.partitions, raw=raw))

    wait_for(lambda: any(a["status"] == "open" for a in read("vm.alerts")), 30,
             "an incident on vm.alerts")
    incident = next(a for a in read("vm.alerts") if a["status"] == "open")
    verdict = {"incident_id": incident["incident_id"], "verdict": "false_positive",
               "timestamp": incident["timestamp"] + 3600, "note": "expected, a batch job"}
    refused = [
        ("not_json", b'{"incident_id": '),
        ("unknown_verdict", orjson.dumps({**verdict, "verdict": "maybe"})),
        ("unknown_incident", orjson.dumps({**verdict, "incident_id": "vm-001/cpu_spike/7"})),
        ("unknown_incident", orjson.dumps({**verdict, "incident_id": "inc-1"})),
    ]
    records: list[tuple[bytes | None, bytes]] = [
        (b"vm-001", orjson.dumps(verdict)),
        (b"ops-console", orjson.dumps(verdict)),  # keyed otherwise: re-keyed, then applied
        *((b"vm-001", raw) for _, raw in refused),
    ]
    asyncio.run(produce(settings.bootstrap_servers, settings.topic("vm.feedback"), records))

    def settled() -> bool:
        c = worker.counters()
        return c.get(FP, 0) >= 2 and sum(dead(c, r) for r in
                                         ("not_json", "unknown_verdict", "unknown_incident")) >= 4

    wait_for(settled, 60, "the verdicts to be counted and the refusals dead-lettered")
    c = worker.counters()
    assert c[FP] == 2, "the verdict and its re-keyed copy are both accepted"
    assert (dead(c, "not_json"), dead(c, "unknown_verdict"), dead(c, "unknown_incident")) == \
        (1, 1, 2)
    assert c["novacron_events_rekeyed_total"] == 1
    factor = f'novacron_class_feedback_factor{{anomaly_class="{incident["anomaly_class"]}"}}'
    assert c[factor] > 1.0, "a false positive makes its class a little less eager fleet-wide"
    feedback_in = f'novacron_events_in_total{{topic="{settings.topic("vm.feedback")}"}}'
    assert c[feedback_in] == len(records) + 1  # the re-keyed copy is read again

    wait_for(lambda: len(read("vm.deadletter")) == len(refused), 30, "the dead letters")
    letters = read("vm.deadletter")
    validator = jsonschema.Draft202012Validator(schema_for("vm.deadletter"))
    for d in letters:
        validator.validate(d)
        assert d["source_topic"] == settings.topic("vm.feedback")
    assert sorted(d["reason"] for d in letters) == sorted(r for r, _ in refused)
    assert {base64.b64decode(d["payload_b64"]) for d in letters} == {raw for _, raw in refused}

    # The fleet-wide class counts: one signed value in the GlobalTable's changelog, keyed by
    # the feedback partition that wrote it, on that same changelog partition.
    changelog = f"{settings.app_id}-class-feedback-changelog"
    wait_for(lambda: bool(asyncio.run(read_all(settings.bootstrap_servers, changelog,
                                               settings.partitions, raw=True))),
             30, "the class-feedback changelog")
    entries = asyncio.run(read_all(settings.bootstrap_servers, changelog, settings.partitions,
                                   raw=True))
    assert len(entries) == 1, "a redelivered verdict rewrites nothing"
    key, value, partition = entries[0]
    assert key == f"partition-{partition}".encode()
    counts = state_codec(settings.state_signing_key.encode()).loads(value, subject=key)
    fp, confirmed, _ = counts.counts[incident["anomaly_class"]]
    assert (fp, confirmed) == (1.0, 0.0)


def test_every_worker_sees_the_fleet_wide_class_counts(
        cluster_settings: Callable[..., Settings],
        worker_factory: Callable[[Settings], WorkerProcess],
        fleet_slice: list[dict[str, Any]]) -> None:
    """Two workers share the partitions; each writes the class counts of its own feedback
    partitions to the GlobalTable and reads everyone's: both end up with the same factors."""
    settings = cluster_settings(partitions=4)
    workers = [worker_factory(settings), worker_factory(settings)]
    seen: dict[str, int] = {}
    messages = []
    for m in fleet_slice:
        seen[m["vm_id"]] = seen.get(m["vm_id"], 0) + 1
        spike = {"cpu_pct": 100.0, "net_rx_bytes_per_s": m["net_rx_bytes_per_s"] * 50 + 5e7}
        messages.append({**m, **spike} if 340 <= seen[m["vm_id"]] < 346 else m)
    asyncio.run(produce(settings.bootstrap_servers, settings.topic("vm.metrics"),
                        [(m["vm_id"].encode(), orjson.dumps(m)) for m in messages]))

    def total(name: str) -> float:
        return sum(w.counters().get(name, 0.0) for w in workers)


    def opened_alerts() -> list[dict[str, Any]]:
        alerts = asyncio.run(read_all(settings.bootstrap_servers, settings.topic("vm.alerts"),
                                      settings.partitions))
        return [a for a in alerts if a["status"] == "open"]

    # Processed counts include repeats (a rebalance re-delivers), so wait for the incidents.
    wait_for(lambda: {a["vm_id"] for a in opened_alerts()} == {m["vm_id"] for m in messages},
             120, "every VM's spike to open an incident")
    opened = opened_alerts()
    asyncio.run(produce(settings.bootstrap_servers, settings.topic("vm.feedback"), [
        (a["vm_id"].encode(), orjson.dumps({"incident_id": a["incident_id"],
                                            "verdict": "false_positive",
                                            "timestamp": a["timestamp"]}))
        for a in opened]))
    wait_for(lambda: total(FP) >= len(opened), 60, "the verdicts to be applied")
    classes = {a["anomaly_class"] for a in opened}

    def factors(w: WorkerProcess) -> dict[str, float]:
        return {k: v for k, v in w.counters().items()
                if k.startswith("novacron_class_feedback_factor{")}

    def agreed() -> bool:
        views = [factors(w) for w in workers]
        return len(views[0]) == len(classes) and views[0] == views[1]

    wait_for(agreed, 30, "both workers to see every partition's class counts")
    assert all(v > 1.0 for v in factors(workers[0]).values())
