"""Hosts, placement and the per-VM recommender: pure, no Kafka."""

from __future__ import annotations

import math

import orjson
import pytest

from agents.forecasting.vm import VMForecaster
from agents.scaling.placement import HostState, VMOnHost, apply_report, choose_target
from agents.scaling.recommender import VMRecommender, recommendation_id
from agents.scaling.sizing import SizingConfig
from schemas.records import HostReport, MetricEvent
from schemas.validate import Rejected, decode_host_report

GIB = float(2**30)


def report(host: str, vm: str, t: float, **kw: object) -> HostReport:
    base: dict[str, object] = {"vcpus": 2.0, "memory_bytes": 4 * GIB, "cpu_cores_used": 1.0,
                               "memory_used_bytes": 2 * GIB}
    return HostReport(host_id=host, vm_id=vm, timestamp=t, **{**base, **kw})  # type: ignore


def test_reports_build_a_host_that_expires_silent_vms_and_round_trips_as_json() -> None:
    h = apply_report(None, report("h1", "a", 0.0), cpu_cores=8, memory_bytes=32 * GIB,
                     ttl_s=600)
    h = apply_report(h, report("h1", "b", 100.0, anti_affinity_group="db"), cpu_cores=8,
                     memory_bytes=32 * GIB, ttl_s=600)
    assert (h.allocated_cores, h.allocated_bytes) == (4.0, 8 * GIB)
    h = apply_report(h, report("h1", "a", -10.0, vcpus=6.0), cpu_cores=8,
                     memory_bytes=32 * GIB, ttl_s=600)  # older than what "a" said: ignored
    assert h.vms["a"].vcpus == 2.0
    h = apply_report(h, report("h1", "b", 700.0), cpu_cores=8, memory_bytes=32 * GIB,
                     ttl_s=600)
    assert set(h.vms) == {"b"}, "a was not heard of for more than the TTL"
    h = apply_report(h, report("h1", "b", 800.0, gone=True), cpu_cores=8,
                     memory_bytes=32 * GIB, ttl_s=600)
    assert h.vms == {}
    again = HostState.from_json(apply_report(h, report("h1", "c", 900.0), cpu_cores=8,
                                             memory_bytes=32 * GIB, ttl_s=600).to_json())
    assert again.vms["c"].reported_at == 900.0 and again.cpu_cores == 8
    summary = again.summary()
    assert summary["headroom"] == {"cpu_cores": 6.0, "memory_bytes": 28 * GIB}
    orjson.dumps(summary)


def test_placement_never_overcommits_and_respects_anti_affinity() -> None:
    hosts = {f"h{i}": HostState(f"h{i}", 8, 32 * GIB) for i in range(1, 6)}
    hosts["h1"].vms["grower"] = VMOnHost(4, 16 * GIB, 4, 15 * GIB, "db", 0)
    hosts["h2"].vms["x"] = VMOnHost(6, 8 * GIB, 1, 1 * GIB, None, 0)  # cpu nearly full
    hosts["h3"].vms["y"] = VMOnHost(1, 4 * GIB, 1, 1 * GIB, "db", 0)  # same group
    hosts["h4"].vms["z"] = VMOnHost(2, 8 * GIB, 1, 1 * GIB, None, 0)
    # h5 is empty: allowed, but consolidation prefers h4, which already runs a VM.
    choice = choose_target(hosts, "grower", 4, 20 * GIB, group="db", exclude="h1")
    assert choice is not None and choice.host_id == "h4", choice
    assert hosts["h4"].fits("grower", 4, 20 * GIB)
    assert "consolidation" in choice.reason()
    # Every host has room for 6 cores and 24 GiB but h4 (2 + 6 cores, 8 + 24 GiB: exactly
    # full is fine) and the empty h5; h3 holds a "db" VM.
    big = choose_target(hosts, "grower", 6, 24 * GIB, group="db", exclude="h1")
    assert big is not None and big.host_id in {"h4", "h5"}
    assert choose_target(hosts, "grower", 9, 1 * GIB, group=None, exclude="h1") is None


def test_decode_host_report_refuses_what_it_cannot_use() -> None:
    good = orjson.dumps({"host_id": "h1", "vm_id": "a", "timestamp": 1.0, "vcpus": 2,
                         "memory_bytes": 1.0, "cpu_cores_used": 0.5, "memory_used_bytes": 1.0})
    assert isinstance(decode_host_report(good), HostReport)
    for bad, reason in [(b"{", "not_json"), (b"[]", "not_object"),
                        (good.replace(b'"vcpus":2', b'"vcpus":-2'), "negative_value"),
                        (good.replace(b'"vm_id":"a",', b""), "missing_field"),
                        (good.replace(b'"vcpus":2', b'"vcpus":"2"'), "wrong_type")]:
        out = decode_host_report(bad)
        assert isinstance(out, Rejected) and out.reason == reason, (bad, out)


def _event(t: float, used_gib: float, host: str = "h1", cpu_pct: float = 20.0) -> MetricEvent:
    return MetricEvent("vm-1", host, t, cpu_pct, used_gib * GIB, 8 * GIB, 4, 0, 0, 0, 0)


def test_recommender_scales_down_then_migrates_when_the_host_is_full() -> None:
    fc = VMForecaster()
    rec = VMRecommender(SizingConfig(stabilization_s=600, cooldown_s=600), valid_for_s=900)
    full = {"h1": HostState("h1", 8, 12 * GIB, {
                "vm-1": VMOnHost(4, 8 * GIB, 1, 1 * GIB, None, 0),
                "other": VMOnHost(4, 4 * GIB, 1, 1 * GIB, None, 0)}),
            "h2": HostState("h2", 8, 32 * GIB, {"z": VMOnHost(1, 1 * GIB, 0, 0, None, 0)})}
    out = []
    for i in range(30):
        ev = _event(300.0 * i, 1.0)
        fc.learn_one(ev)
        out.append(rec.recommend(ev, fc, full))
    downs = [r for r in out if r is not None]
    assert downs and downs[0].action == "scale_down" and downs[0].timestamp >= 600
    assert downs[0].target_memory_bytes < 8 * GIB and downs[0].target_vcpus <= 4
    assert downs[0].recommendation_id == recommendation_id("vm-1", "scale_down",
                                                           downs[0].timestamp)
    assert downs[0].valid_until == downs[0].timestamp + 900
    assert 0.3 <= downs[0].confidence <= 0.95
    assert any(r.startswith("pattern ") for r in downs[0].reasons)
    ev = _event(300.0 * 30, 7.0)  # 7 GiB: the target (> 8 GiB) cannot stay on h1 (4 GiB free)
    fc.learn_one(ev)
    up = rec.recommend(ev, fc, full)
    assert up is not None and up.action == "migrate" and up.target_host == "h2", up
    assert up.target_memory_bytes >= 7 * GIB * 1.15
    assert full["h2"].fits("vm-1", up.target_vcpus, up.target_memory_bytes)
    assert any("no room" in r for r in up.reasons)


def test_recommender_caps_a_scale_up_when_no_host_has_room() -> None:
    fc = VMForecaster()
    rec = VMRecommender(SizingConfig(stabilization_s=0, cooldown_s=0))
    only = {"h1": HostState("h1", 4, 9 * GIB, {"vm-1": VMOnHost(4, 8 * GIB, 1, 1, None, 0)})}
    for i in range(5):
        ev = _event(300.0 * i, 1.0)
        fc.learn_one(ev)
        rec.recommend(ev, fc, only)
    ev = _event(1500.0, 7.9)
    fc.learn_one(ev)
    up = rec.recommend(ev, fc, only)
    assert up is not None and up.action == "scale_up" and up.target_host is None
    assert up.target_memory_bytes <= 9 * GIB, "never beyond what the host can give"
    assert any("capped" in r for r in up.reasons)


@pytest.mark.parametrize("n", [1, 7])
def test_target_vcpus_round_up_the_fractional_target(n: int) -> None:
    fc = VMForecaster()
    rec = VMRecommender(SizingConfig(stabilization_s=0, cooldown_s=0))
    r = None
    for i in range(3):
        ev = MetricEvent("vm-1", "h1", 300.0 * i, 100.0 * n / 8, 1 * GIB, 8 * GIB, 8, 0, 0, 0, 0)
        fc.learn_one(ev)
        r = rec.recommend(ev, fc, None) or r
    assert r is not None and r.target_cpu_cores is not None
    assert r.target_vcpus == max(1, math.ceil(r.target_cpu_cores - 1e-9))
