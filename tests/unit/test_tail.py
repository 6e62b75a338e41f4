"""The operator's view without a broker: tail's rows and filters, the live board, and the
CLI's one-line refusals of ``tail`` and ``feedback``."""

from __future__ import annotations

import argparse
import dataclasses
import io
from typing import Any

import orjson
import pytest

from schemas.records import (
    Alert,
    FeatureContribution,
    Feedback,
    Forecast,
    HorizonForecast,
    HostReport,
    Recommendation,
    to_json,
)
from schemas.validate import decode_feedback
from streams.cli import main
from streams.live import LiveBoard, RateMeter
from streams.tail import (
    ALERT_COLUMNS,
    FORECAST_COLUMNS,
    RECOMMENDATION_COLUMNS,
    Palette,
    feedback_record,
    format_alert,
    format_forecast,
    format_line,
    format_recommendation,
    header,
    matches,
)

T0 = 1372636800.0  # 2013-07-01 00:00 UTC, the Bitbrains traces' first day
GIB = 2**30


def as_dict(record: Any) -> dict[str, Any]:
    """A record as a consumer reads it from its topic."""
    return orjson.loads(to_json(record))


def alert(vm: str = "vm-001", severity: str = "high", status: str = "open",
          started: float = T0, at: float = T0, host: str = "host-01",
          anomaly_class: str = "io_bottleneck", score: float = 0.8) -> dict[str, Any]:
    return as_dict(Alert(
        incident_id=f"{vm}/{anomaly_class}/{int(started)}", vm_id=vm, host_id=host,
        timestamp=at, status=status, anomaly_class=anomaly_class,  # type: ignore[arg-type]
        severity=severity, confidence=0.7, score=score, threshold=0.4,  # type: ignore[arg-type]
        started_at=started, detector="hst+zscore", features=[
            FeatureContribution("disk_read_bytes_per_s", 1.151e6, 6300.0, 16.2),
            FeatureContribution("disk_write_bytes_per_s", 8.295e6, 3.24e4, 17.0),
            FeatureContribution("cpu_pct", 12.5, 10.0, 0.4)]))


def forecast(vm: str = "vm-002", host: str = "host-01", metric: str = "cpu_pct",
             unit: float = 1.0) -> dict[str, Any]:
    return as_dict(Forecast(
        vm_id=vm, host_id=host, timestamp=T0, metric=metric, step_s=300.0,
        model="ensemble:snaive,hw,hw", horizons=[
            HorizonForecast(h, T0 + h, unit * (40.0 + h / 600), unit * 35.0,
                            unit * (45.0 + h / 300), unit * 30.0, unit * 50.0)
            for h in (300.0, 900.0, 3600.0)]))


def recommendation(vm: str = "vm-003", host: str = "host-02", at: float = T0,
                   action: str = "migrate", target: str | None = "host-07") -> dict[str, Any]:
    return as_dict(Recommendation(
        recommendation_id=f"{vm}/{action}/{int(at)}", vm_id=vm, host_id=host, timestamp=at,
        action=action, confidence=0.83, current_vcpus=2, target_vcpus=4,  # type: ignore[arg-type]
        reasons=["pattern bursty (hourly peak 3.1x the mean)",
                 "cpu: forecast 3.4 above 1.9 cores",
                 "cpu forecast 3.4 cores [2.9, 3.9] in 1 h",
                 "memory forecast 6.1 GiB [5.8, 6.5] in 1 h",
                 "host-02 has no room for 4 vCPUs and 8 GiB " + "x" * 200],
        current_memory_bytes=8 * GIB, target_memory_bytes=12 * GIB, valid_until=at + 900,
        target_host=target, pattern="bursty", target_cpu_cores=3.6))


def usage(vm: str, used: float, at: float = T0, vcpus: float = 4.0, gone: bool = False
          ) -> dict[str, Any]:
    return as_dict(HostReport(host_id="host-01", vm_id=vm, timestamp=at, vcpus=vcpus,
                              memory_bytes=8 * GIB, cpu_cores_used=used,
                              memory_used_bytes=3 * GIB, gone=gone))


# -- rows ------------------------------------------------------------------------------------

def test_alert_row_has_the_key_fields_in_their_units() -> None:
    cells = format_alert(alert())
    assert len(cells) == len(ALERT_COLUMNS)
    assert cells[:8] == ["2013-07-01 00:00:00", "vm-001", "host-01", "open", "high",
                         "io_bottleneck", "0.80", "0.40"]
    assert cells[8] == f"vm-001/io_bottleneck/{int(T0)}"  # what `novacron feedback` takes
    assert cells[9] == ("disk_read 1.1 MiB/s (6.15 KiB/s, z +16.2), "
                        "disk_write 7.91 MiB/s (31.6 KiB/s, z +17.0)")  # the top two only


def test_forecast_row_shows_each_horizon_with_its_interval() -> None:
    cells = format_forecast(forecast())
    assert len(cells) == len(FORECAST_COLUMNS)
    assert cells[:4] == ["2013-07-01 00:00:00", "vm-002", "host-01", "cpu_pct"]
    assert cells[4] == ("+5m 40.5% [35.0%, 46.0%]  +15m 41.5% [35.0%, 48.0%]  "
                        "+1h 46.0% [35.0%, 57.0%]")
    memory = format_forecast(forecast(metric="memory_used_bytes", unit=GIB / 10))[4]
    assert memory.startswith("+5m 4.05 GiB [3.5 GiB, 4.6 GiB]  +15m")


def test_recommendation_row_shortens_the_reasons() -> None:
    cells = format_recommendation(recommendation())
    assert len(cells) == len(RECOMMENDATION_COLUMNS)
    assert cells[:8] == ["2013-07-01 00:00:00", "vm-003", "host-02", "migrate", "2->4",
                         "8.0->12.0 GiB", "host-07", "0.83"]
    assert cells[8].startswith("pattern bursty (hourly peak 3.1x the mean); cpu: forecast")
    assert "cpu forecast" not in cells[8] and "memory forecast" not in cells[8]
    assert len(cells[8]) == 100 and cells[8].endswith("…")
    assert format_recommendation(recommendation(action="scale_up", target=None))[6] == "-"


def test_rows_align_under_the_header_and_colors_do_not_move_them() -> None:
    plain = format_line("alerts", alert())
    assert header(ALERT_COLUMNS).index("VM") == plain.index("vm-001")
    assert header(ALERT_COLUMNS).index("SCORE") == plain.index(" 0.80")
    colored = format_line("alerts", alert(), Palette(True))
    assert "\033[31m" in colored  # high is red
    assert colored.replace("\033[31m", "").replace("\033[2m", "").replace("\033[0m", "") \
        == plain
    resolved = format_line("alerts", alert(status="resolved"), Palette(True))
    assert "\033[32mresolved" in resolved
    assert "\033[35mmigrate" not in format_line("recommendations", recommendation())
    assert "\033[34mmigrate" in format_line("recommendations", recommendation(),
                                            Palette(True))


def test_palette_is_off_without_a_terminal_or_with_no_color(
        monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert Palette.for_stream(Tty()).enabled  # type: ignore[arg-type]
    monkeypatch.setenv("NO_COLOR", "1")
    assert not Palette.for_stream(Tty()).enabled  # type: ignore[arg-type]
    monkeypatch.delenv("NO_COLOR")
    assert not Palette.for_stream(io.StringIO()).enabled
    assert not Palette.for_stream(object()).enabled  # type: ignore[arg-type]  # no isatty


@pytest.mark.parametrize("broken", [
    {"vm_id": "vm-1"},
    {**alert(), "score": "high"},
    {**alert(), "features": [{"name": "cpu_pct"}]},
])
def test_malformed_records_raise_what_tail_catches(broken: dict[str, Any]) -> None:
    with pytest.raises((KeyError, TypeError, ValueError)):
        format_line("alerts", broken)


# -- filters ---------------------------------------------------------------------------------

def test_filters_by_vm_host_and_severity_or_worse() -> None:
    low, medium = alert(vm="vm-1", severity="low"), alert(vm="vm-2", severity="medium")
    high, critical = alert(vm="vm-3", severity="high"), alert(vm="vm-4", severity="critical",
                                                              host="host-09")
    records = [low, medium, high, critical]

    def kept(**filters: Any) -> list[str]:
        return [r["vm_id"] for r in records if matches(r, **filters)]

    assert kept() == ["vm-1", "vm-2", "vm-3", "vm-4"]
    assert kept(min_severity="high") == ["vm-3", "vm-4"]
    assert kept(min_severity="medium") == ["vm-2", "vm-3", "vm-4"]
    assert kept(min_severity="critical", host="host-01") == []
    assert kept(host="host-09") == ["vm-4"]
    assert kept(vm="vm-2", min_severity="low") == ["vm-2"]
    assert matches(forecast(), vm="vm-002", host="host-01")
    assert not matches(recommendation(), host="host-01")  # it is on host-02
    assert not matches({"vm_id": "vm-1", "severity": "urgent"}, min_severity="low")


# -- the live board --------------------------------------------------------------------------

def render(board: LiveBoard, **kw: Any) -> list[str]:
    return board.render(kw.pop("width", 160), kw.pop("counters", {}), replayed=10,
                        events_per_s=5.0, now_s=T0, **kw)


def test_board_incident_opens_updates_then_resolves_and_disappears() -> None:
    board = LiveBoard()
    board.observe("vm.alerts", alert(vm="vm-001", severity="medium"))
    board.observe("vm.alerts", alert(vm="vm-002", severity="critical", started=T0 + 600,
                                     anomaly_class="cpu_spike"))
    board.observe("vm.alerts", alert(vm="vm-001", severity="high", status="update",
                                     at=T0 + 300))
    assert board.open_incidents() == [f"vm-002/cpu_spike/{int(T0) + 600}",
                                      f"vm-001/io_bottleneck/{int(T0)}"]
    screen = "\n".join(render(board))
    assert "OPEN INCIDENTS (2)" in screen
    row = next(line for line in screen.splitlines() if line.startswith("high"))
    assert "vm-001" in row and "07-01 00:00" in row and "0.80" in row
    board.observe("vm.alerts", alert(vm="vm-001", severity="high", status="resolved",
                                     at=T0 + 900))
    assert board.open_incidents() == [f"vm-002/cpu_spike/{int(T0) + 600}"]
    assert "vm-001" not in "\n".join(render(board))
    assert board.counts["vm.alerts"] == 4


def test_board_busiest_vms_by_latest_cpu_use() -> None:
    board = LiveBoard(rows=3)
    for vm, used in (("vm-a", 0.5), ("vm-b", 3.0), ("vm-c", 1.0), ("vm-d", 2.0)):
        board.observe("vm.host-usage", usage(vm, used))
    assert board.busiest() == ["vm-b", "vm-d", "vm-c"]
    board.observe("vm.host-usage", usage("vm-a", 3.9, at=T0 + 300))  # now the busiest
    board.observe("vm.host-usage", usage("vm-b", 0.1, at=T0 - 300))  # older: ignored
    assert board.busiest() == ["vm-a", "vm-b", "vm-d"]
    board.observe("vm.host-usage", usage("vm-b", 0.0, at=T0 + 600, gone=True))
    assert board.busiest() == ["vm-a", "vm-d", "vm-c"]
    lines = render(board)
    row = next(line for line in lines if line.startswith("vm-a"))
    assert "3.90 / 4" in row and "98%" in row and "3 GiB / 8 GiB" in row


def test_board_keeps_the_latest_recommendations_newest_first() -> None:
    board = LiveBoard(rows=4)
    for i in range(10):
        board.observe("vm.recommendations", recommendation(vm=f"vm-{i:03d}", at=T0 + 300 * i))
    assert [cells[1] for cells in board.recommendations()] == \
        ["vm-009", "vm-008", "vm-007", "vm-006"]
    assert board.counts["vm.recommendations"] == 10


def test_board_render_fits_width_and_height_and_shows_counters() -> None:
    board = LiveBoard()
    for i in range(8):
        board.observe("vm.recommendations", recommendation(vm=f"vm-{i:03d}"))
        board.observe("vm.host-usage", usage(f"vm-{i:03d}", i / 2))
        board.observe("vm.forecasts", forecast())
    board.note = "replay finished"
    counters = {"novacron_events_processed_total": 1200.0,
                "novacron_consumer_lag_messages": 17.0}
    lines = render(board, width=60, height=20, counters=counters)
    assert len(lines) == 20 and all(len(line) <= 60 for line in lines)
    assert lines[0].startswith("NovaCron live  2013-07-01 00:00:00 UTC")
    assert lines[1] == "worker: processed 1,200 events (5/s) | metrics lag 17 | dea…"
    assert lines[2].startswith("replayed 10 | alerts 0 | forecasts 8 | recommendations 8")
    assert lines[3] == "replay finished"
    full = "\n".join(render(board, counters={}))
    assert "worker: metrics unavailable" in full and "forecasts 8" in full
    board.links = "status page: http://127.0.0.1:6066/"
    assert render(board, counters=counters)[1] == "status page: http://127.0.0.1:6066/"
    colored = render(board, palette=Palette(True))
    assert any(line.startswith("\033[34m") for line in colored)  # migrate rows in blue


def test_board_skips_malformed_records_and_still_renders() -> None:
    board = LiveBoard()
    board.observe("vm.alerts", {"status": "open"})
    board.observe("vm.alerts", {**alert(), "severity": "apocalyptic"})
    board.observe("vm.recommendations", {**recommendation(), "reasons": None})
    board.observe("vm.host-usage", {**usage("vm-1", 1.0), "cpu_cores_used": "lots"})
    assert board.counts["malformed"] == 4
    assert board.open_incidents() == [] and board.busiest() == []
    assert "(none)" in render(board)


def test_rate_meter() -> None:
    meter = RateMeter()
    assert meter.update(0.0, 0.0) == 0.0
    assert meter.update(100.0, 2.0) == 50.0
    assert meter.update(50.0, 4.0) == 0.0  # a restarted worker's counter: no negative rate


# -- feedback record -------------------------------------------------------------------------

def test_feedback_record_is_keyed_by_the_incidents_vm() -> None:
    args = argparse.Namespace(incident_id="vm-001/cpu_spike/1372636800",
                              verdict="false_positive", note="batch job")
    made = feedback_record(args, 1700000000.0)
    assert not isinstance(made, str)
    key, verdict = made
    assert key == b"vm-001"
    decoded = decode_feedback(to_json(verdict))
    assert isinstance(decoded, Feedback)
    assert dataclasses.asdict(decoded) == {
        "incident_id": "vm-001/cpu_spike/1372636800", "verdict": "false_positive",
        "timestamp": 1700000000.0, "note": "batch job"}
    refused = feedback_record(argparse.Namespace(incident_id="inc-1", verdict="confirmed",
                                                 note=None), 0.0)
    assert isinstance(refused, str) and "<vm_id>/<anomaly class>/<start epoch s>" in refused


# -- the CLI's refusals ----------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "expected"), [
    (["tail", "forecasts", "--severity", "high"], "--severity applies to alerts only"),
    (["tail", "recommendations", "--severity", "low"], "--severity applies to alerts only"),
    (["tail", "alerts", "--severity", "urgent"], "invalid choice: 'urgent'"),
    (["tail", "logs"], "invalid choice: 'logs'"),
    (["feedback", "bad-id", "--confirmed"], "<vm_id>/<anomaly class>/<start epoch s>"),
    (["feedback", "vm-1/cpu_spike/1", "--confirmed", "--false-positive"], "not allowed with"),
    (["feedback", "x"], "one of the arguments --false-positive --confirmed is required"),
])
def test_cli_refuses_bad_arguments_in_one_line(
        argv: list[str], expected: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # a broker address nobody answers at: the refusal must come before any connection
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], err

