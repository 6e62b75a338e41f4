"""Security settings against the real broker's SASL_PLAINTEXT listener: a worker, the topic
set-up and a producer authenticate with SASL/PLAIN from the settings; a wrong password gives
one clear line and a non-zero exit, not a hang."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams.broker import LocalKafka
from streams.runner import settings_env
from streams.settings import Settings
from tests.integration.conftest import SASL_USERS
from tests.integration.helpers import WorkerProcess, wait_for


def sasl_settings(kafka_broker: LocalKafka | None, settings_factory: Callable[..., Settings],
                  password: str) -> Settings:
    if kafka_broker is None or kafka_broker.sasl_bootstrap_servers is None:
        pytest.skip("needs the broker this session starts (KAFKA_BOOTSTRAP_SERVERS is set)")
    (user,) = SASL_USERS
    return settings_factory(bootstrap_servers=kafka_broker.sasl_bootstrap_servers,
                            security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                            sasl_username=user, sasl_password=password, partitions=2)


async def produce_with(settings: Settings, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                                **settings.kafka_client_options())
    await producer.start()
    try:
        for key, value in records:
            await producer.send(settings.topic("vm.metrics"), key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


def test_a_worker_authenticates_with_sasl_from_its_settings(
        kafka_broker: LocalKafka | None, settings_factory: Callable[..., Settings],
        worker_factory: Callable[[Settings], WorkerProcess],
        fleet_slice: list[dict[str, Any]]) -> None:
    settings = sasl_settings(kafka_broker, settings_factory, SASL_USERS["novacron"])
    worker = worker_factory(settings)  # creates its topics over SASL, then serves
    samples = [m for m in fleet_slice if m["vm_id"] == "vm-001"][:50]
    asyncio.run(produce_with(settings, [(b"vm-001", orjson.dumps(m)) for m in samples]))
    wait_for(lambda: worker.counters().get("novacron_events_processed_total", 0)
             >= len(samples), 60, "the events to be processed over SASL")
    assert SASL_USERS["novacron"] not in worker.log_path.read_text()


def test_a_wrong_password_is_one_clear_line(
        kafka_broker: LocalKafka | None, settings_factory: Callable[..., Settings]) -> None:
    settings = sasl_settings(kafka_broker, settings_factory, "not-the-password")
    env = {**os.environ, **settings_env(settings)}
    done = subprocess.run([sys.executable, "-m", "streams.cli", "topics", "create"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("novacron: "), done.stderr
    assert "not-the-password" not in done.stderr
