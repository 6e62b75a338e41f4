"""Reading a range of a partition directly, outside the worker's consumer group."""

from __future__ import annotations

import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

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


async def read_range(settings: Settings, topic: str, partition: int, start: int, end: int,
                     timeout_s: float = 60.0) -> list[Record]:
    """The messages of ``topic[partition]`` with ``start <= offset < end`` (fewer if some
    were deleted by retention, or not all could be read within ``timeout_s``)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                **settings.kafka_client_options())
    await consumer.start()
    tp = TopicPartition(topic, partition)
    try:
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
    finally:
        await consumer.stop()
