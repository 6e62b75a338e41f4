"""The contract seen from a non-Python client: kcat (librdkafka, like the Go and C clients).

The hypervisor agents and the DWCP scheduler are Go services. kcat produces ``vm.metrics`` the
way they would (keyed by vm_id, librdkafka's ``murmur2_random`` partitioner) and consumes every
output topic; what it reads must satisfy the JSON Schemas in ``schemas/``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import jsonschema
import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from schemas.registry import schema_for
from streams.settings import Settings
from tests.integration.helpers import WorkerProcess, wait_for

KCAT = shutil.which("kcat") or shutil.which("kafkacat")


def kcat(*args: str, stdin: bytes | None = None) -> bytes:
    assert KCAT, "kcat is not installed (Debian package kcat; `make setup` installs it)"
    proc = subprocess.run([KCAT, *args], input=stdin, capture_output=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


@pytest.fixture(scope="module")
def kcat_path() -> str:
    if KCAT is None:
        pytest.fail("kcat is not installed (Debian package kcat; `make setup` installs it)")
    return KCAT


def test_kcat_producer_and_consumers_speak_the_schemas(
        kcat_path: str, cluster_settings: Callable[..., Settings],
        worker_factory: Callable[[Settings], WorkerProcess],
        fleet_slice: list[dict[str, Any]]) -> None:
    settings = cluster_settings(partitions=4)
    worker = worker_factory(settings)
    boot = settings.bootstrap_servers
    messages = [m for m in fleet_slice if m["vm_id"] in ("vm-001", "vm-002")]
    lines = []  # real samples; sustained load on vm-002's second half drives a recommendation
    for i, m in enumerate(messages):
        if m["vm_id"] == "vm-002" and i > len(messages) // 2:
            m = {**m, "cpu_pct": 96.0}
        lines.append(m["vm_id"].encode() + b"|" + orjson.dumps(m))
    lines.append(b"vm-001|{not json")
    kcat("-P", "-b", boot, "-t", settings.topic("vm.metrics"), "-K", "|",
         "-X", "partitioner=murmur2_random", stdin=b"\n".join(lines) + b"\n")

    def done() -> bool:
        c = worker.counters()
        dead = sum(v for k, v in c.items() if k.startswith("novacron_events_deadlettered_total{"))
        return c.get("novacron_events_processed_total", 0) + dead >= len(lines)

    wait_for(done, 90, "the kcat messages to be processed")
    assert worker.counters()["novacron_events_processed_total"] == len(messages)

    # librdkafka's murmur2_random puts each key where aiokafka's (Java's) murmur2 does.
    part_of = kcat("-C", "-b", boot, "-t", settings.topic("vm.metrics"), "-e", "-q",
                   "-o", "beginning", "-f", "%k %p\n").decode().split("\n")
    partitioner = DefaultPartitioner()
    assert len(list(filter(None, part_of))) == len(lines)
    for row in filter(None, part_of):
        key, partition = row.split()
        expected = partitioner(key.encode(), list(range(settings.partitions)),
                               list(range(settings.partitions)))
        assert int(partition) == expected, f"{key} landed on {partition}, murmur2 says {expected}"

    seen: dict[str, int] = {}
    for topic in ("vm.alerts", "vm.forecasts", "vm.recommendations", "vm.drift",
                  "vm.deadletter"):
        out = kcat("-C", "-b", boot, "-t", settings.topic(topic), "-e", "-q",
                   "-o", "beginning", "-f", "%k\t%s\n")
        validator = jsonschema.Draft202012Validator(schema_for(topic))
        records = [line.split(b"\t", 1) for line in out.split(b"\n") if line]
        for key, value in records:
            record = orjson.loads(value)
            validator.validate(record)
            if topic != "vm.deadletter":
                assert key.decode() == record["vm_id"], "outputs are keyed by vm_id"
        seen[topic] = len(records)
    assert seen["vm.forecasts"] > 0
    assert seen["vm.recommendations"] > 0
    assert seen["vm.deadletter"] == 1
