"""Reading topics directly, outside the worker's consumer group: a partition range (input
the group committed but never learned, agents.offsets) or whole partitions (the model
catalog and snapshots, streams.model_store)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.clients import start_client
from streams.settings import Settings


@dataclass(frozen=True, slots=True)
class Record:
    """A message as read; ``tp`` mirrors Faust's ``message.tp``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: float  # seconds

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


@asynccontextmanager
async def _consumer(settings: Settings) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                **settings.kafka_client_options())
    await start_client(consumer)
    try:
        yield consumer
    finally:
        await consumer.stop()


async def read_range(settings: Settings, topic: str, partition: int, start: int, end: int,
                     timeout_s: float = 60.0) -> list[Record]:
    """The messages of ``topic[partition]`` with ``start <= offset < end`` (fewer if some
    were deleted by retention, or not all could be read within ``timeout_s``)."""
    tp = TopicPartition(topic, partition)
    async with _consumer(settings) as consumer:
        consumer.assign([tp])
        consumer.seek(tp, start)
        out: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while await consumer.position(tp) < end and time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            for r in batch.get(tp, []):
                if r.offset >= end:
                    break
                if r.value is not None:
                    out.append(Record(topic, partition, r.offset, r.key, r.value,
                                      r.timestamp / 1000.0))
        return out


async def read_topic(settings: Settings, topic: str, partitions: list[int]
                     ) -> list[tuple[bytes, bytes | None, int]]:
    """Every record (key, value, partition) of ``partitions`` of ``topic`` from the
    beginning to their current end, in offset order per partition ([] if no such topic);
    tombstones have value None."""
    async with _consumer(settings) as consumer:
        if topic not in await consumer.topics():  # (fetches the cluster's topic names)
            return []
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: list[tuple[bytes, bytes | None, int]] = []
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend((r.key or b"", r.value, r.partition) for r in records)
        return out
