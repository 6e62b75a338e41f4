"""The model catalog on Kafka: read it, ask the workers for a checkpoint or a rollback.

Used by ``novacron models`` and by the leader worker's checkpoint timer. The records are
those of :mod:`streams.models`; the workers' side is :mod:`agents.model_agent`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from streams.clients import start_client
from streams.models import (
    MODEL_KIND,
    Catalog,
    Command,
    ModelVersion,
    RollbackReport,
    VersionEntry,
    version_key,
)
from streams.reading import read_topic
from streams.settings import Settings
from streams.topics import model_commands_topic, model_snapshots_topic, models_topic

log = logging.getLogger(__name__)


class ModelError(Exception):
    """A model command that cannot be carried out (unknown version, timeout): one line."""


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java's and aiokafka's) gives ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def parameters(settings: Settings) -> dict[str, Any]:
    """What a version was learned with: the learners and the settings that shape them."""
    from agents.forecasting.series import MODELS
    from agents.metrics_agent import pipeline_config
    from agents.pipeline import DETECTOR_NAME

    return {
        "detector": DETECTOR_NAME,
        "forecast_candidates": list(MODELS),
        "pipeline": dataclasses.asdict(pipeline_config(settings)),
    }


async def read_catalog(settings: Settings) -> Catalog:
    records = await read_topic(settings, settings.topic(models_topic.name), [0])
    return Catalog.from_records((k, v) for k, v, _ in records)


async def _producer(settings: Settings) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                                **settings.kafka_client_options())
    await start_client(producer)
    return producer


async def _send_commands(settings: Settings, producer: AIOKafkaProducer,
                         command: Command) -> int:
    """``command`` to every partition of ``vm.model-commands``; returns how many."""
    topic = settings.topic(model_commands_topic.name)
    partitions = sorted(await producer.partitions_for(topic))
    await asyncio.gather(*[
        await producer.send(topic, command.to_json(), key=f"partition-{p}".encode(),
                            partition=p) for p in partitions])
    return len(partitions)


async def _wait_until(settings: Settings, done: Any, wait_s: float) -> Catalog:
    deadline = time.monotonic() + wait_s
    while True:
        cat = await read_catalog(settings)
        if done(cat) or time.monotonic() >= deadline:
            return cat
        await asyncio.sleep(0.5)


async def request_checkpoint(settings: Settings, *, source: str = "cli",
                             wait_s: float = 60.0) -> tuple[int, VersionEntry | None]:
    """Describe the next version in the catalog and ask every partition's owner to snapshot
    its VMs. Waits up to ``wait_s`` for every partition's report; returns the version and its
    catalog entry (None when not waited for)."""
    from streams.admin import ensure_topics

    await ensure_topics(settings)
    catalog = await read_catalog(settings)
    version = catalog.next_version()
    model = ModelVersion(version=version, kind=MODEL_KIND, parameters=parameters(settings),
                         created_at=time.time(), source=source)
    producer = await _producer(settings)
    try:
        await (await producer.send(settings.topic(models_topic.name), model.to_json(),
                                   key=version_key(version), partition=0))
        n = await _send_commands(settings, producer, Command(
            "checkpoint", version, uuid.uuid4().hex[:12], time.time(),
            keep=settings.checkpoints_kept))
    finally:
        await producer.stop()
    log.info("checkpoint %d requested from %d partitions", version, n)
    if wait_s <= 0:
        return version, None
    cat = await _wait_until(settings, lambda c: version in c.versions
                            and c.versions[version].complete(n), wait_s)
    entry = cat.versions.get(version)
    if entry is None or not entry.complete(n):
        got = len(entry.reports) if entry else 0
        raise ModelError(f"checkpoint {version}: {got} of {n} partitions reported within "
                         f"{wait_s:g} s (are the workers running?)")
    return version, entry


async def request_rollback(settings: Settings, version: int, *, wait_s: float = 60.0
                           ) -> list[RollbackReport]:
    """Ask every partition's owner to restore its VMs' state from ``version``; waits up to
    ``wait_s`` for every partition to report."""
    catalog = await read_catalog(settings)
    entry = catalog.versions.get(version)
    if entry is None:
        known = ", ".join(str(v) for v in sorted(catalog.versions)) or "none"
        raise ModelError(f"no model version {version} (versions: {known})")
    producer = await _producer(settings)
    try:
        n = len(await producer.partitions_for(settings.topic(model_commands_topic.name)))
        if not entry.complete(n):
            raise ModelError(f"version {version} is incomplete: {len(entry.reports)} of {n} "
                             f"partitions were snapshotted")
        request_id = uuid.uuid4().hex[:12]
        now = time.time()
        await (await producer.send(
            settings.topic(models_topic.name),
            Command("rollback", version, request_id, now).to_json(),
            key=f"rollback-{request_id}".encode(), partition=0))
        await _send_commands(settings, producer, Command("rollback", version, request_id, now))
    finally:
        await producer.stop()
    if wait_s <= 0:
        return []
    cat = await _wait_until(settings, lambda c: len(c.rollback_reports.get(request_id, {}))
                            >= n, wait_s)
    reports = cat.rollback_reports.get(request_id, {})
    if len(reports) < n:
        raise ModelError(f"rollback to {version}: {len(reports)} of {n} partitions confirmed "
                         f"within {wait_s:g} s (are the workers running?)")
    return [reports[p] for p in sorted(reports)]


async def read_snapshots(settings: Settings, partition: int, version: int
                         ) -> dict[str, bytes]:
    """vm_id -> signed state of every VM of ``partition`` in ``version``."""
    from streams.models import parse_snapshot_key

    out: dict[str, bytes] = {}
    for key, value, _ in await read_topic(settings, settings.topic(model_snapshots_topic.name),
                                          [partition]):
        parsed = parse_snapshot_key(key)
        if parsed is None or parsed[1] != version:
            continue
        if value is None:
            out.pop(parsed[0], None)
        else:
            out[parsed[0]] = value
    return out
