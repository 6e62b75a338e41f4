"""Integration fixtures: one real Kafka broker per session, workers as real processes."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.broker import LocalKafka, free_port
from streams.settings import Settings
from tests.integration.helpers import WorkerProcess


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


SASL_USERS = {"novacron": "novacron-sasl-secret"}


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[LocalKafka | None]:
    """The broker this session starts (None when ``KAFKA_BOOTSTRAP_SERVERS`` names one): a
    PLAINTEXT listener, and a SASL_PLAINTEXT one (PLAIN, users :data:`SASL_USERS`)."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip():
        yield None
        return
    kafka = LocalKafka(sasl_users=SASL_USERS).start()
    try:
        yield kafka
    finally:
        kafka.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: LocalKafka | None) -> str:
    """A real broker: ``KAFKA_BOOTSTRAP_SERVERS`` if set, else the one this session starts."""
    if kafka_broker is None:
        return os.environ["KAFKA_BOOTSTRAP_SERVERS"].strip()
    return kafka_broker.bootstrap_servers


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Callable[[Settings], WorkerProcess]]:
    workers: list[WorkerProcess] = []

    def start(settings: Settings) -> WorkerProcess:
        n = len(workers)
        settings = dataclasses.replace(settings, web_port=free_port(),
                                       data_dir=str(tmp_path / f"worker{n}"))
        worker = WorkerProcess(settings, tmp_path / f"worker{n}.log")
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for w in workers:
        w.stop()


@pytest.fixture
def cluster_settings(kafka_bootstrap: str, settings_factory: Callable[..., Settings]
                     ) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        return settings_factory(bootstrap_servers=kafka_bootstrap, **overrides)

    return make


