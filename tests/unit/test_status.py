"""The status board (pure, no Kafka) and the page rendered from it."""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from faust.types import TP
from prometheus_client import CollectorRegistry

from agents.pipeline import Outputs, PipelineConfig
from agents.processor import Inbound, MetricsProcessor
from agents.state_layout import state_codec
from schemas.records import (
    METRIC_FIELDS,
    Alert,
    FeatureContribution,
    Forecast,
    HorizonForecast,
    MetricEvent,
    Recommendation,
)
from streams.app import create_app
from streams.model_store import partition_for
from streams.observability import WorkerMetrics
from streams.settings import Settings
from streams.status import StatusBoard, consumer_lag
from streams.status_page import render_page

T0 = 1.7e9


def sample(vm: str, t: float, cpu: float = 10.0, host: str = "h-1") -> MetricEvent:
    return MetricEvent(vm, host, t, cpu, 2e9, 8e9, 4, 1e3, 2e3, 1e5, 2e5)


def alert(vm: str, n: int, status: str, t: float, severity: str = "high",
          started_at: float = T0) -> Alert:
    return Alert(incident_id=f"{vm}/cpu_spike/{n}", vm_id=vm, host_id="h-1", timestamp=t,
              status=status, anomaly_class="cpu_spike", severity=severity,  # type: ignore
              confidence=0.9, score=0.8, threshold=0.4, started_at=started_at,
              features=[] if status == "resolved" else
              [FeatureContribution("cpu_pct", 99.0, 20.0, 7.5)])


def forecast(vm: str, metric: str, t: float) -> Forecast:
    horizons = [HorizonForecast(h, t + h, 50.0, 45.0, 55.0, 40.0, 60.0)
                for h in (300.0, 900.0, 3600.0)]
    return Forecast(vm, "h-1", t, metric, 300.0, "holt", horizons)


def recommendation(vm: str, n: int) -> Recommendation:
    return Recommendation(recommendation_id=f"{vm}/rec/{n}", vm_id=vm, host_id="h-1",
                       timestamp=T0 + n, action="scale_up", confidence=0.8,
                       reasons=["p95 cpu above target"], current_vcpus=2, target_vcpus=4,
                       current_memory_bytes=4e9, target_memory_bytes=4e9,
                       valid_until=T0 + n + 900)


def step(ev: MetricEvent, **out: Any) -> tuple[MetricEvent, Outputs]:
    """An event with what processing it produced."""
    return ev, Outputs(**out)


def test_incident_open_update_resolved() -> None:
    board = StatusBoard()
    board.observe(100.0, [step(sample("vm-1", T0), alerts=[alert("vm-1", 1, "open", T0)])])
    assert [i.incident_id for i in board.open_incidents()] == ["vm-1/cpu_spike/1"]
    board.observe(101.0, [step(sample("vm-1", T0 + 300), alerts=[
        alert("vm-1", 1, "update", T0 + 300, severity="critical")])])
    (inc,) = board.open_incidents()
    assert (inc.status, inc.severity, inc.last_at, inc.ended_at) == \
        ("update", "critical", T0 + 300, None)
    board.observe(102.0, [step(sample("vm-1", T0 + 600), alerts=[
        alert("vm-1", 1, "resolved", T0 + 600, severity="critical")])])
    assert board.open_incidents() == []
    (done,) = board.resolved
    assert (done.started_at, done.ended_at, done.status) == (T0, T0 + 600, "resolved")
    assert done.features[0]["name"] == "cpu_pct", "the features of the last alert that had any"
    view = board.vm_view("vm-1")
    assert view is not None
    assert [(i["started_at"], i["ended_at"]) for i in view["incidents"]] == [(T0, T0 + 600)]


def test_open_incidents_most_severe_first_and_capped() -> None:
    board = StatusBoard(max_open_incidents=3)
    sev = ["low", "critical", "medium", "high"]
    board.observe(1.0, [step(sample(f"vm-{i}", T0), alerts=[
        alert(f"vm-{i}", 1, "open", T0 + i, severity=sev[i], started_at=T0 + i)])
        for i in range(4)])
    assert [i.severity for i in board.open_incidents()] == ["critical", "high", "medium"]
    assert board.open_dropped_total == 1  # vm-0's, updated least recently


def test_ring_keeps_the_last_samples_in_order_and_skips_late_ones() -> None:
    board = StatusBoard(samples_per_vm=5)
    board.observe(1.0, [step(sample("vm-1", T0 + 60 * i, cpu=float(i))) for i in range(12)])
    board.observe(2.0, [step(sample("vm-1", T0, cpu=99.0))])  # late: not kept
    view = board.vm_view("vm-1")
    assert view is not None
    assert view["samples"] == 5
    assert view["series"]["cpu_pct"] == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert view["timestamps"] == [T0 + 60 * i for i in range(7, 12)]
    assert set(view["series"]) == set(METRIC_FIELDS)
    assert view["series"]["memory_used_bytes"] == [2e9] * 5


def test_vm_cap_drops_the_least_recently_seen() -> None:
    board = StatusBoard(max_vms=3)
    board.observe(1.0, [step(sample(f"vm-{i}", T0)) for i in range(3)])
    board.observe(2.0, [step(sample("vm-0", T0 + 60))])  # vm-0 seen again: vm-1 is oldest
    board.observe(3.0, [step(sample("vm-3", T0 + 60)), step(sample("vm-4", T0 + 60))])
    assert list(board.vms) == ["vm-0", "vm-3", "vm-4"]
    assert board.vms_evicted_total == 2
    assert board.vm_view("vm-1") is None


def test_recommendations_capped_newest_first() -> None:
    board = StatusBoard(max_recommendations=4)
    board.observe(1.0, [step(sample("vm-1", T0),
                             recommendations=[recommendation("vm-1", n) for n in range(10)])])
    recs = board.summary(1.0)["recommendations"]
    assert [r["recommendation_id"] for r in recs] == [f"vm-1/rec/{n}" for n in (9, 8, 7, 6)]
    assert recs[0]["action"] == "scale_up" and recs[0]["target_vcpus"] == 4


def test_events_per_s_over_the_window() -> None:
    board = StatusBoard(rate_window_s=10.0, created_at=0.0)
    board.observe(100.0, [step(sample("vm-1", T0 + i)) for i in range(50)])
    board.observe(105.0, [step(sample("vm-1", T0 + 100 + i)) for i in range(50)])
    assert board.events_per_s(109.0) == 10.0  # 100 events over the 10 s window
    assert board.events_per_s(112.0) == 5.0  # the first batch left the window
    assert board.events_per_s(200.0) == 0.0
    assert board.events_total == 100


def test_retain_forgets_vms_and_their_open_incidents() -> None:
    board = StatusBoard()
    board.observe(1.0, [step(sample(vm, T0), alerts=[alert(vm, 1, "open", T0)])
                        for vm in ("vm-1", "vm-2")])
    assert board.retain(lambda vm: vm == "vm-2") == 1
    assert list(board.vms) == ["vm-2"]
    assert [i.vm_id for i in board.open_incidents()] == ["vm-2"]


def test_json_shapes() -> None:
    board = StatusBoard()
    board.observe(10.0, [
        step(sample("vm-1", T0, cpu=80.0), alerts=[alert("vm-1", 1, "open", T0)],
             forecasts=[forecast("vm-1", m, T0) for m in METRIC_FIELDS]),
        step(sample("vm-2", T0, cpu=20.0), recommendations=[recommendation("vm-2", 1)])])
    s = board.summary(12.0, {"t.vm.metrics": 7, "other": 1}, metrics_topic="t.vm.metrics")
    orjson.dumps(s)  # JSON-serializable as is
    assert s["scope"] == "this worker's partitions"
    assert s["consumer_lag"] == {"total": 8, "input": 7, "input_topic": "t.vm.metrics",
                                 "by_topic": {"t.vm.metrics": 7, "other": 1}}
    assert (s["vms_tracked"], s["events_total"], s["open_incidents_total"]) == (2, 2, 1)
    assert s["events_per_s"] == 1.0  # 2 events, 2 s since the board started
    inc = s["open_incidents"][0]
    assert {"incident_id", "vm_id", "host_id", "anomaly_class", "severity", "status",
            "started_at", "last_at", "ended_at", "score", "features"} <= set(inc)
    assert [v["vm_id"] for v in s["busiest_vms"]] == ["vm-1", "vm-2"]
    assert s["busiest_vms"][0]["open_incident"] == {"anomaly_class": "cpu_spike",
                                                    "severity": "high"}
    assert s["busiest_vms"][0]["cpu_pct"] == 80.0
    assert s["bounds"]["samples_per_vm"] == 240
    view = board.vm_view("vm-1")
    assert view is not None
    orjson.dumps(view)
    band = view["forecasts"]["cpu_pct"]
    assert (band["timestamp"], band["model"]) == (T0, "holt")
    assert band["points"][0] == {"horizon_s": 300.0, "at": T0 + 300, "value": 50.0,
                                 "lower_90": 40.0, "upper_90": 60.0}
    assert len(band["points"]) == 3
    assert view["incidents"][0]["ended_at"] is None


def test_consumer_lag_per_topic() -> None:
    tp = namedtuple("tp", "topic partition")
    assert consumer_lag({tp("a", 0): 10, tp("a", 1): 3, tp("b", 0): 0},
                        {tp("a", 0): 9, tp("a", 1): 0}) == {"a": 2, "b": 0}


def test_the_board_sees_what_the_processor_publishes(
        fleet_slice: list[dict[str, Any]]) -> None:
    proc = MetricsProcessor(PipelineConfig(), state_codec(b"k"), load_state=lambda _: None,
                            metrics=WorkerMetrics(CollectorRegistry()))
    msgs = fleet_slice[:40]
    batch = [Inbound(m["vm_id"].encode(), orjson.dumps(m), "vm.metrics", 0, i)
             for i, m in enumerate(msgs)]
    batch[5] = Inbound(b"vm-001", b"{broken", "vm.metrics", 0, 5)
    result = proc.process(batch, now=1.9e9)
    assert len(result.events) == result.processed == 39
    board = StatusBoard()
    board.observe(1.0, result.events)
    assert sorted(board.vms) == sorted({m["vm_id"] for m in msgs})
    assert result.forecasts, "the slice is long enough to forecast"
    published = orjson.loads(result.forecasts[-1][1])  # the newest of its VM and metric
    view = board.vm_view(published["vm_id"])
    assert view is not None
    band = view["forecasts"][published["metric"]]
    assert (band["timestamp"], band["model"]) == (published["timestamp"], published["model"])
    assert band["points"] == [{k: h[k] for k in ("horizon_s", "at", "value", "lower_90",
                                                 "upper_90")} for h in published["horizons"]]


# -- the page ---------------------------------------------------------------------------------

EVIL = '<script>alert("x")</script>&"\''


def _hostile_board() -> StatusBoard:
    board = StatusBoard()
    board.observe(1.0, [step(sample(EVIL, T0, host=EVIL), alerts=[alert(EVIL, 1, "open", T0)],
                             recommendations=[recommendation(EVIL, 1)])])
    return board


def test_page_has_no_external_urls() -> None:
    page = render_page(_hostile_board().summary(2.0), "vm-1")
    assert not re.search(r"https?:", page, re.I), "no external URL: the page works offline"
    assert "@import" not in page and "url(" not in page
    assert "<link" not in page.lower()
    assert not re.search(r"<script[^>]*\bsrc=", page, re.I)
    for target in re.findall(r"""(?:href|src|action)\s*=\s*["']([^"']*)""", page, re.I):
        assert target.startswith(("/", "?", "#")) and not target.startswith("//"), target


def test_page_escapes_what_comes_from_input() -> None:
    board = _hostile_board()
    for vm_id in (None, EVIL):
        page = render_page(board.summary(2.0), vm_id)
        assert "<script>alert" not in page
        assert page.count("<script") == 2  # the table spec and the code, nothing else
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    page = render_page(board.summary(2.0), EVIL)
    assert 'data-vm="&lt;script&gt;' in page
    assert 'href="/vm/%3Cscript%3E' in page  # the link is URL-encoded too


def test_page_renders_the_tables_server_side() -> None:
    board = StatusBoard()
    board.observe(1.0, [step(sample("vm-7", T0, cpu=93.0),
                             alerts=[alert("vm-7", 1, "open", T0, severity="critical")],
                             recommendations=[recommendation("vm-7", 1)])])
    page = render_page(board.summary(2.0))
    open_table = page.split('id="open-body"')[1].split("</tbody>")[0]
    assert 'data-vm="vm-7"' in open_table and "cpu_spike" in open_table
    assert 'class="sev sev-critical"' in open_table
    recs = page.split('id="recs-body"')[1].split("</tbody>")[0]
    assert "scale_up" in recs and "2 → 4" in recs
    assert '<section id="drill" data-vm="" hidden>' in page


async def test_the_worker_forgets_the_vms_of_partitions_it_no_longer_holds(
        settings_factory: Callable[..., Settings], tmp_path: Path) -> None:
    settings = settings_factory(bootstrap_servers="localhost:9", partitions=4,
                                data_dir=str(tmp_path))
    service = create_app(settings)
    vms = [f"vm-{i}" for i in range(20)]
    service.status.observe(1.0, [step(sample(vm, T0)) for vm in vms])
    metrics = settings.topic("vm.metrics")
    await service.app.on_partitions_assigned.send(
        {TP(metrics, 0), TP(metrics, 2), TP(settings.topic("vm.feedback"), 1)})
    kept = [vm for vm in vms if partition_for(vm.encode(), 4) in (0, 2)]
    assert 0 < len(kept) < len(vms)
    assert list(service.status.vms) == kept
