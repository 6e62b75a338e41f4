"""The project's own broker is a real Kafka: offsets, lifecycle."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.consumer import AIOKafkaConsumer

from streams.broker import LocalKafka, answers_metadata


async def test_sanity_end_offset_counts_every_record(kafka_bootstrap: str) -> None:
    """16 records produced in batches of 10, 1 and 5 give end offset 16 (an emulator got 12)."""
    topic = f"sanity-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        n = 0
        for size in (10, 1, 5):
            futures = [await producer.send(topic, key=b"k", value=f"{n + i}".encode())
                       for i in range(size)]
            await producer.flush()
            for fut in futures:
                await fut
            n += size
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        assert (await consumer.end_offsets([tp]))[tp] == 16
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        values = []
        while len(values) < 16:
            for records in (await consumer.getmany(tp, timeout_ms=2000)).values():
                values.extend(int(r.value) for r in records)
        assert values == list(range(16))
    finally:
        await consumer.stop()


def test_local_broker_starts_and_stops_cleanly() -> None:
    kafka = LocalKafka().start()
    proc = kafka.process
    assert proc is not None
    assert answers_metadata(kafka.bootstrap_servers)
    data_dir = kafka.data_dir
    kafka.stop()
    assert proc.poll() is not None, "the broker process is still running"
    assert not data_dir.exists(), "a temporary data dir was left behind"
    assert not answers_metadata(kafka.bootstrap_servers)
