"""``novacron tail`` and ``novacron feedback`` as an operator runs them: real processes on the
real broker, records shaped by schemas.records."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from schemas.records import (
    Alert,
    FeatureContribution,
    Feedback,
    Forecast,
    HorizonForecast,
    Recommendation,
    to_json,
)
from schemas.validate import decode_feedback
from streams.admin import ensure_topics
from streams.runner import settings_env
from streams.settings import Settings
from tests.integration.helpers import REPO, produce, read_all

T0 = 1372636800.0
TIMEOUT_S = 60.0


@pytest.fixture
def operator(cluster_settings: Callable[..., Settings]
             ) -> Iterator[tuple[Settings, dict[str, str]]]:
    """Settings with topics of their own (created), and the environment that gives a CLI
    process the same settings."""
    settings = cluster_settings(partitions=3)
    asyncio.run(ensure_topics(settings))
    env = {**os.environ, **settings_env(settings)}
    env.pop("NO_COLOR", None)
    yield settings, env


def novacron(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


def publish(settings: Settings, topic: str, records: list[tuple[str, bytes]]) -> None:
    asyncio.run(produce(settings.bootstrap_servers, settings.topic(topic),
                        [(key.encode(), value) for key, value in records]))


def alert(vm: str, severity: str) -> bytes:
    return to_json(Alert(
        incident_id=f"{vm}/cpu_spike/{int(T0)}", vm_id=vm, host_id="host-01", timestamp=T0,
        status="open", anomaly_class="cpu_spike", severity=severity,  # type: ignore[arg-type]
        confidence=0.7, score=0.9, threshold=0.4, started_at=T0, detector="hst",
        features=[FeatureContribution("cpu_pct", 99.0, 20.0, 8.5)]))


def forecast(vm: str, metric: str) -> bytes:
    return to_json(Forecast(
        vm_id=vm, host_id="host-02", timestamp=T0, metric=metric, step_s=300.0,
        model="ensemble:hw", horizons=[HorizonForecast(h, T0 + h, 50.0, 40.0, 60.0, 35.0, 65.0)
                                       for h in (300.0, 3600.0)]))


def recommendation(vm: str, at: float) -> bytes:
    return to_json(Recommendation(
        recommendation_id=f"{vm}/scale_up/{int(at)}", vm_id=vm, host_id="host-03",
        timestamp=at, action="scale_up", confidence=0.9, reasons=["pattern bursty"],
        current_vcpus=2, target_vcpus=4, current_memory_bytes=4 * 2**30,
        target_memory_bytes=6 * 2**30, valid_until=at + 900))


def rows(stdout: str) -> list[str]:
    """The table rows printed (not the header nor skip notes)."""
    return [line for line in stdout.splitlines()[1:] if not line.startswith("(")]


def test_tail_alerts_filters_by_severity_and_skips_malformed_records(
        operator: tuple[Settings, dict[str, str]]) -> None:
    settings, env = operator
    publish(settings, "vm.alerts", [("vm-low", alert("vm-low", "low")),
                                    ("vm-bad", b"{not json"),
                                    ("vm-medium", alert("vm-medium", "medium")),
                                    ("vm-high", alert("vm-high", "high"))])
    done = novacron(env, "tail", "alerts", "--from-beginning", "--limit", "1",
                    "--severity", "high")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("TIME (UTC)")
    printed = rows(done.stdout)
    assert len(printed) == 1 and "vm-high" in printed[0] and "high" in printed[0]
    assert f"vm-high/cpu_spike/{int(T0)}" in printed[0]  # the id `novacron feedback` takes
    assert "vm-low" not in done.stdout and "vm-medium" not in done.stdout
    assert "\033[" not in done.stdout  # not a terminal: no colors


def test_tail_forecasts_of_one_vm(operator: tuple[Settings, dict[str, str]]) -> None:
    settings, env = operator
    publish(settings, "vm.forecasts", [("vm-a", forecast("vm-a", "cpu_pct")),
                                       ("vm-b", forecast("vm-b", "cpu_pct")),
                                       ("vm-a", forecast("vm-a", "net_rx_bytes_per_s"))])
    done = novacron(env, "tail", "forecasts", "--vm", "vm-a", "--from-beginning",
                    "--limit", "2")
    assert done.returncode == 0, done.stderr
    printed = rows(done.stdout)
    assert [line.split()[2] for line in printed] == ["vm-a", "vm-a"]
    assert "+5m 50.0% [40.0%, 60.0%]" in printed[0] and "cpu_pct" in printed[0]
    assert "net_rx_bytes_per_s" in printed[1] and "B/s" in printed[1]


def test_tail_recommendations_from_now_on_of_one_vm(
        operator: tuple[Settings, dict[str, str]]) -> None:
    """Without --from-beginning only records published after the header are printed."""
    settings, env = operator
    publish(settings, "vm.recommendations", [("vm-b", recommendation("vm-b", T0))])
    with subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "tail", "recommendations", "--vm", "vm-b",
             "--limit", "1"], env=env, cwd=REPO, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True) as proc:
        guard = threading.Timer(TIMEOUT_S, proc.kill)
        guard.start()
        try:
            assert proc.stdout is not None
            head = proc.stdout.readline()
            assert head.startswith("TIME (UTC)"), head
            later = T0 + 3600
            publish(settings, "vm.recommendations", [("vm-a", recommendation("vm-a", later)),
                                                     ("vm-b", recommendation("vm-b", later))])
            out, err = proc.communicate(timeout=TIMEOUT_S)
        finally:
            guard.cancel()
    assert proc.returncode == 0, err
    printed = rows(head + out)
    assert len(printed) == 1, out
    assert printed[0].startswith("2013-07-01 01:00:00  vm-b")  # the new one, not the old
    assert "scale_up" in printed[0] and "2->4" in printed[0] and "4.0->6.0 GiB" in printed[0]


def test_feedback_is_published_keyed_by_the_vm(
        operator: tuple[Settings, dict[str, str]]) -> None:
    settings, env = operator
    incident = f"vm-007/memory_leak/{int(T0)}"
    done = novacron(env, "feedback", incident, "--false-positive", "--note", "n")
    assert done.returncode == 0, done.stderr
    topic = settings.topic("vm.feedback")
    assert done.stdout.startswith(f"sent false_positive on {incident} to {topic} (partition ")
    records: list[Any] = asyncio.run(read_all(settings.bootstrap_servers, topic,
                                              settings.partitions, raw=True))
    assert len(records) == 1
    key, value, _ = records[0]
    assert key == b"vm-007"
    verdict = decode_feedback(value)
    assert isinstance(verdict, Feedback)
    assert (verdict.incident_id, verdict.verdict, verdict.note) == (incident, "false_positive",
                                                                    "n")
    refused = novacron(env, "feedback", "inc-42", "--confirmed")
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "<vm_id>/<anomaly class>" in refused.stderr


def test_tail_of_a_missing_topic_is_one_line(
        cluster_settings: Callable[..., Settings]) -> None:
    settings = cluster_settings()  # no topics created
    done = novacron({**os.environ, **settings_env(settings)}, "tail", "alerts")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "novacron topics create" in done.stderr


def test_tail_stops_quietly_on_ctrl_c(operator: tuple[Settings, dict[str, str]]) -> None:
    _, env = operator
    with subprocess.Popen([sys.executable, "-m", "streams.cli", "tail", "alerts"], env=env,
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        guard = threading.Timer(TIMEOUT_S, proc.kill)
        guard.start()
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().startswith("TIME (UTC)")
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=TIMEOUT_S)
        finally:
            guard.cancel()
    assert proc.returncode == 0 and err == ""
