"""The status page of a real worker, loaded in headless Chromium after real traces with an
injected spike went through it: the script ran, the incident is listed, the drill-down draws
the VM's series and its incident."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.settings import Settings
from tests.integration.helpers import WorkerProcess, produce, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (Debian package `chromium`; "
                             "`make tools` installs it)")


def spiked(fleet_slice: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """vm-001 up to a CPU and network spike that is still going on (its incident stays
    open), and vm-002 under sustained load from its 250th sample (a scale-up)."""
    out, seen = [], Counter[str]()
    for msg in fleet_slice:
        vm = msg["vm_id"]
        if vm not in ("vm-001", "vm-002"):
            continue
        seen[vm] += 1
        i, msg = seen[vm], dict(msg)
        if vm == "vm-001":
            if i > 346:
                continue
            if i >= 340:
                msg["cpu_pct"] = 100.0
                msg["net_rx_bytes_per_s"] = msg["net_rx_bytes_per_s"] * 50 + 5e7
        elif i >= 250:
            msg["cpu_pct"] = 97.0
        out.append(msg)
    return out


def chromium(tmp_path: Path, url: str, *args: str) -> str:
    """``url`` loaded in headless Chromium, its scripts given 8 s of virtual time; stdout.
    The page's script must log no error."""
    assert CHROMIUM is not None
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", f"--user-data-dir={tmp_path / 'chromium'}",
         "--enable-logging=stderr", "--virtual-time-budget=8000", *args, url],
        capture_output=True, timeout=60, check=False)
    log = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, log[-2000:]
    console = [line for line in log.splitlines() if ":CONSOLE" in line]
    assert not console, "the page logged:\n" + "\n".join(console)
    return proc.stdout.decode()


def test_status_page_shows_the_incident_and_draws_the_drill_down(
        cluster_settings: Callable[..., Settings],
        worker_factory: Callable[[Settings], WorkerProcess],
        fleet_slice: list[dict[str, Any]], tmp_path: Path) -> None:
    settings = cluster_settings(partitions=4)
    worker = worker_factory(settings)
    samples = spiked(fleet_slice)
    asyncio.run(produce(settings.bootstrap_servers, settings.topic("vm.metrics"),
                        [(m["vm_id"].encode(), orjson.dumps(m)) for m in samples]))
    wait_for(lambda: worker.counters().get("novacron_events_processed_total", 0)
             >= len(samples), 60, "the metrics to be processed")

    def status() -> dict[str, Any]:
        code, body = worker.get("/status.json")
        assert code == 200, body
        return dict(orjson.loads(body))

    # The board sees a batch just after its outputs are published.
    wait_for(lambda: status()["events_total"] >= len(samples), 20, "the board to see them all")
    summary = status()
    assert summary["events_total"] == len(samples)
    spike_at = [m["timestamp"] for m in samples if m["vm_id"] == "vm-001"][339]
    opened = [i for i in summary["open_incidents"]
              if i["vm_id"] == "vm-001" and i["started_at"] >= spike_at]
    assert opened, f"the spike's incident is not open: {summary['open_incidents']}"
    incident = opened[0]
    assert incident["anomaly_class"] in {"cpu_spike", "network_saturation"}
    assert summary["vms_tracked"] == 2
    assert summary["consumer_lag"]["input"] == 0
    assert summary["consumer_lag"]["input_topic"] == settings.topic("vm.metrics")

    code, body = worker.get("/status/vms/vm-001")
    assert code == 200
    vm = orjson.loads(body)
    assert vm["samples"] == 240, "the ring keeps the last 240 samples"
    assert set(vm["forecasts"]) >= {"cpu_pct", "memory_used_bytes"}
    assert vm["forecasts"]["cpu_pct"]["points"][0]["lower_90"] <= \
        vm["forecasts"]["cpu_pct"]["points"][0]["upper_90"]
    drawn = {i["incident_id"]: i for i in vm["incidents"]}
    assert drawn[incident["incident_id"]]["ended_at"] is None
    assert worker.get("/status/vms/vm-999")[0] == 404

    code, body = worker.get("/?vm=vm-001")  # the drill-down open, rendered by the server
    assert code == 200 and b'<section id="drill" data-vm="vm-001">' in body

    # The summary page, after its script polled /status.json.
    dom = chromium(tmp_path, worker.url("/"), "--dump-dom")
    refreshed = re.search(r'<body[^>]*data-refreshed="(\d+)"', dom)
    assert refreshed and int(refreshed.group(1)) >= 1, "the page's script did not refresh it"
    assert "updated " in dom and "stale" not in dom.split('id="stamp"')[1].split(">")[0]
    open_rows = dom.split('id="open-body"')[1].split("</tbody>")[0]
    assert 'data-vm="vm-001"' in open_rows and incident["anomaly_class"] in open_rows
    assert f'sev-{incident["severity"]}' in open_rows
    busiest = dom.split('id="busy-body"')[1].split("</tbody>")[0]
    assert "vm-002" in busiest
    if summary["recommendations"]:
        assert "vm-002" in dom.split('id="recs-body"')[1].split("</tbody>")[0]

    # The drill-down: its series, forecast band and incident drawn by the script as SVG.
    drill = chromium(tmp_path, worker.url("/vm/vm-001"), "--dump-dom")
    charts = drill.split('id="charts"')[1].split("</div>")[0]
    assert charts.count("<svg") == 6
    cpu = charts.split('data-metric="cpu_pct"')[1].split("</svg>")[0]
    series = re.search(r'<path d="(M[^"]+)" class="series"', cpu)
    assert series and series.group(1).count("L") == 239, "one point per sample"
    assert 'class="band"' in cpu, "the forecast band"
    assert re.search(r'<rect [^>]*class="inc sev-[a-z]+"', cpu), "the incident's span"
    assert f'data-incident="{incident["incident_id"]}"' in cpu

    shot = tmp_path / "vm-001.png"
    chromium(tmp_path, worker.url("/vm/vm-001"), f"--screenshot={shot}",
             "--window-size=1280,900", "--hide-scrollbars")
    assert shot.is_file() and shot.stat().st_size > 10_000
    if os.environ.get("NOVACRON_SCREENSHOT_DIR"):  # to look at them
        Path(os.environ["NOVACRON_SCREENSHOT_DIR"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(os.environ["NOVACRON_SCREENSHOT_DIR"]) / shot.name)
        chromium(tmp_path, worker.url("/"), "--screenshot=" + os.path.join(
            os.environ["NOVACRON_SCREENSHOT_DIR"], "summary.png"), "--window-size=1280,1600")
