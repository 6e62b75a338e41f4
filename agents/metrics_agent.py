"""The Faust agents: thin loops that move bytes between Kafka and the processors."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from faust.streams import _current_event  # the context Faust reads a table write's partition from
from mode.types.signals import BaseSignalT

from agents.offsets import mark_key, missing
from agents.pipeline import PipelineConfig
from agents.processor import BatchResult, Inbound, MetricsProcessor
from agents.scaling.placement import HostState, apply_report
from agents.scaling.sizing import SizingConfig
from agents.state_layout import state_codec
from schemas.records import to_json
from schemas.validate import Rejected, dead_letter, decode_host_report
from streams.model_store import partition_for
from streams.reading import Record, read_range
from streams.tables import (
    class_feedback_table,
    host_directory_table,
    hosts_table,
    input_offsets_table,
    vm_state_table,
)
from streams.topics import (
    alerts_topic,
    deadletter_topic,
    drift_topic,
    feedback_topic,
    forecasts_topic,
    host_usage_topic,
    metrics_topic,
    recommendations_topic,
)

if TYPE_CHECKING:
    from streams.app import Service

log = logging.getLogger(__name__)

#: How long a rebalance waits for the learned states to be written before forgetting them.
REVOKE_FLUSH_S = 10.0
#: Due states the flush timer writes between two chances for a batch to run.
FLUSH_CHUNK = 64


def pipeline_config(settings: Any) -> PipelineConfig:
    return PipelineConfig(
        tumbling_window_s=settings.tumbling_window_s,
        sliding_window_s=settings.sliding_window_s,
        forecast_horizons_s=settings.forecast_horizons_s,
        forecast_interval_s=settings.forecast_interval_s,
        alert_threshold=settings.alert_threshold,
        resolve_after_events=settings.resolve_after_events,
        sizing=SizingConfig(
            cpu_quantile=settings.cpu_quantile, cpu_margin=settings.cpu_margin,
            cpu_window_s=settings.sizing_window_s, memory_margin=settings.memory_margin,
            memory_window_s=settings.sizing_window_s, stabilization_s=settings.stabilization_s,
            cooldown_s=settings.cooldown_s),
        recommendation_valid_s=settings.recommendation_valid_s,
        host_report_interval_s=settings.host_report_interval_s,
    )


class Reread:
    """A message read again outside the consumer (agents.offsets), shaped like a Faust event
    for the table writes: ``.message`` has the same fields."""

    def __init__(self, record: Record) -> None:
        self.message = record


class InPartition:
    """Stands for an event of ``partition`` in a table write (:func:`write_through` only
    reads ``event.message.partition``)."""

    class _Message:
        def __init__(self, partition: int) -> None:
            self.partition = partition

    def __init__(self, partition: int) -> None:
        self.message = InPartition._Message(partition)


def write_through(table: Any, key: bytes, value: bytes, event: Any) -> Awaitable[Any]:
    """``table[key] = value`` in the partition of ``event``, returning the changelog send to
    await: it resolves once the broker has the record.

    Faust's own ``table[key] = value`` queues the changelog record in the producer's buffer,
    and ``producer.flush()`` gives up on that buffer after 0.1 s without progress, so a
    worker killed after a flush could lose state its committed offsets already cover. Faust
    writes a key to the changelog partition of the current event: here, the message the
    value was learned from, whose partition is the one the key belongs to.
    """
    _current_event.set(weakref.ref(event))
    try:
        sent = table.send_changelog(event.message.partition, key, value)
        table.data[key] = value  # the local store (rocksdict), same partition
    finally:
        _current_event.set(None)
    return cast(Awaitable[Any], sent)


def register_agents(service: Service) -> None:
    """Attach the agents to ``service.app``."""
    app, settings = service.app, service.settings
    state_table = service.tables[vm_state_table.name]
    fleet_table = service.tables[class_feedback_table.name]
    hosts = service.tables[hosts_table.name]
    host_directory = service.tables[host_directory_table.name]
    marks = service.tables[input_offsets_table.name]
    topics = service.topics
    if settings.signing_key_is_default:
        log.warning("NOVACRON_STATE_SIGNING_KEY is not set: learned state is signed with the "
                    "development key; set a secret in production")
    processor = MetricsProcessor(
        pipeline_config(settings), state_codec(settings.state_signing_key.encode()),
        load_state=state_table.get, metrics=service.metrics,
        load_fleet=lambda: list(fleet_table.items()),
        # items(), not list(items()): list() asks the table's length first, another walk
        load_hosts=lambda: host_directory.items(),
        max_message_bytes=settings.max_message_bytes,
        max_future_skew_s=settings.max_future_skew_s,
        idle_expiry_s=settings.idle_vm_expiry_s, state_flush_s=settings.state_flush_s)
    service.processor = processor
    # Per input partition, the offset after the last message learned, and the last mark
    # written (in memory; the marks table has the marks).
    learned: dict[Any, int] = {}
    marked: dict[Any, int] = {}
    # Both agents share the processor's cached states: one batch at a time, processed and
    # published, so a state is never written back older than one written just before it.
    turn = asyncio.Lock()

    @app.on_partitions_revoked.connect
    async def forget_cached_states(sender: Any, /, *args: Any, signal: BaseSignalT[Any],
                                   **kwargs: Any) -> None:
        """Write every learned state and its mark, then forget them: whoever takes a partition
        next (maybe this worker again) starts from the mark without re-reading what was
        learned here. If the writes do not finish in time, the marks still name the offsets
        to read again, so nothing is lost, only re-learned."""
        async with turn:
            try:
                await asyncio.wait_for(flush(everything=True), REVOKE_FLUSH_S)
            except Exception as exc:  # a timeout or a broker error: logged, input re-read
                log.warning("states not written before the rebalance (%r): the next owner "
                            "reads their input again", exc)
            processor.forget()
        learned.clear()
        marked.clear()

    @app.on_partitions_assigned.connect
    async def forget_moved_vms(sender: Any, /, *args: Any, signal: BaseSignalT[Any],
                               **kwargs: Any) -> None:
        """The status board keeps only the VMs of the input partitions this worker holds."""
        metrics = topics[metrics_topic.name]
        assigned = args[0] if args else kwargs.get("assigned", ())
        mine = {tp.partition for tp in assigned if tp.topic == metrics.get_topic_name()}
        partitions = metrics.partitions or settings.partitions
        service.status.retain(lambda vm_id: partition_for(vm_id.encode(), partitions) in mine)

    async def publish(result: BatchResult, events: Sequence[Any], rekey_topic: str) -> None:
        # State first, acknowledged by the broker, then the outputs, also acknowledged, and
        # only then does the batch return (and its input offsets become committable). A
        # worker killed between the two leaves learned state whose outputs were not sent
        # (the batch's inputs are re-delivered, recognised as already learned, and skipped),
        # never outputs whose state was lost (which the next owner would publish again,
        # opening an incident twice), and never committed inputs whose state was lost.
        written = write_states(result)
        # Key partition-<n> is written only by the owner of feedback partition n, tied to one
        # of its messages: always changelog partition n, one writer per key.
        written += [write_through(fleet_table, key, encoded, events[index])
                    for key, (index, encoded) in result.fleet.items()]
        await asyncio.gather(*written)
        # Then, with the outputs, the marks that moved (agents.offsets).
        for event in events:
            learned[event.message.tp] = event.message.offset + 1
        sent: list[Awaitable[Any]] = mark_learned()
        # Straight to the producer (the records are bytes already): a Topic.send per record
        # goes through Faust's channel and message objects first, a fifth of a busy worker.
        producer = app.producer
        for name, records in ((alerts_topic.name, result.alerts),
                              (forecasts_topic.name, result.forecasts),
                              (drift_topic.name, result.drifts),
                              (recommendations_topic.name, result.recommendations),
                              (host_usage_topic.name, result.host_reports),
                              (deadletter_topic.name, result.deadletters),
                              (rekey_topic, result.rekeyed)):
            topic_name = topics[name].get_topic_name()
            for record_key, value in records:
                sent.append(await producer.send(topic_name, record_key, value, None, None, None))
            if records:
                service.metrics.records_published.labels(topic=name).inc(len(records))
        await asyncio.gather(*sent)

    def write_states(result: BatchResult) -> list[Awaitable[Any]]:
        """The result's VM states, each in the partition of its messages."""
        return [write_through(state_table, key, encoded, InPartition(partition))
                for key, (partition, encoded) in result.states.items()]

    def mark_learned() -> list[Awaitable[Any]]:
        """The marks that moved: per input partition, the offset before which every learned
        state is written (agents.offsets)."""
        sent = []
        for tp, offset in learned.items():
            mark = processor.settled(tp.topic, tp.partition, offset)
            if marked.get(tp) != mark:
                marked[tp] = mark
                sent.append(write_through(marks, mark_key(tp.topic, tp.partition),
                                          str(mark).encode(), InPartition(tp.partition)))
        return sent

    def observe_end_to_end(events: Sequence[Any]) -> None:
        now = time.time()
        for e in events:
            produced = e.message.timestamp  # seconds (Kafka's record timestamp)
            if produced:
                service.metrics.end_to_end_seconds.observe(max(0.0, now - produced))

    def inbound(events: Sequence[Any]) -> list[Inbound]:
        return [Inbound(e.message.key, e.message.value, e.message.topic, e.message.partition,
                        e.message.offset) for e in events]

    async def learnable(events: Sequence[Any]) -> Sequence[Any]:
        """The batch, with any messages of its partitions that were committed but never
        learned (before a message, from the partition's learned mark, or the previous message
        of the batch, up to it) read from Kafka directly and put before it (agents.offsets)."""
        expected: dict[Any, int | None] = {}
        out: list[Any] = []
        for e in events:
            tp, offset = e.message.tp, e.message.offset
            if tp not in expected:
                raw = marks.get(mark_key(tp.topic, tp.partition))
                expected[tp] = learned.get(tp, int(raw) if raw is not None else None)
            gap = missing(offset, expected[tp])
            if gap is not None:
                log.info("%s[%d]: offsets %d..%d are committed but their learned state "
                         "was not written; reading them again", tp.topic, tp.partition,
                         gap.start, gap.stop - 1)
                service.metrics.input_gaps.inc()
                out += [Reread(r) for r in await read_range(settings, tp.topic, tp.partition,
                                                             gap.start, gap.stop)]
            out.append(e)
            expected[tp] = max(expected[tp] or 0, offset + 1)
        return out

    async def handle(events: Sequence[Any], agent: str, rekey_topic: str,
                     process: Callable[[Sequence[Inbound], float], BatchResult]) -> None:
        """Process one batch with the shared processor and publish what it asks for."""
        started = time.perf_counter()
        async with turn:
            # No current event while reading: the store then looks the key up in every local
            # partition instead of assuming the partition of whichever event came last.
            _current_event.set(None)
            events = await learnable(events)
            batch = inbound(events)
            if batch:
                now = time.time()
                result = process(batch, now)
                await publish(result, events, rekey_topic)
                service.status.observe(now, result.events)
        service.metrics.batch_size.observe(len(batch))
        service.metrics.batch_seconds.labels(agent=agent).observe(time.perf_counter() - started)
        observe_end_to_end(events)

    async def flush(everything: bool = False, limit: int | None = None) -> int:
        """Write the learned states that are due (``everything``: all of them; at most
        ``limit``) and the marks that moved with them (call with ``turn`` held): how many."""
        if not processor.dirty:
            return 0
        written = write_states(processor.flush(time.time(), everything, limit))
        await asyncio.gather(*written)
        await asyncio.gather(*mark_learned())
        return len(written)

    if settings.state_flush_s > 0:
        @app.timer(max(1.0, settings.state_flush_s / 4))
        async def flush_states() -> None:
            """Write the states that are due even when input stops: a chunk at a time, so
            that batches go on in between."""
            while True:
                async with turn:
                    written = await flush(limit=FLUSH_CHUNK)
                if written < FLUSH_CHUNK:
                    return
                await asyncio.sleep(0)

    if settings.idle_vm_expiry_s > 0:
        @app.timer(min(600.0, settings.idle_vm_expiry_s / 4))
        async def expire_idle_vms() -> None:
            """Delete the state of VMs that sent nothing for NOVACRON_IDLE_VM_EXPIRY_S."""
            async with turn:
                gone = processor.expire(list(state_table.keys()), time.time())
                deleted = []
                for key in gone:
                    # A tombstone in the key's changelog partition, then the local store.
                    deleted.append(state_table.send_changelog(
                        partition_for(key, settings.partitions), key, None,
                        value_serializer="raw"))
                    del state_table.data[key]
                await asyncio.gather(*deleted)
            if gone:
                log.info("forgot %d idle VMs", len(gone))

    from agents.model_agent import register_model_agent

    register_model_agent(service, processor, turn, write_through,
                         lambda: flush(everything=True))

    @app.agent(topics[metrics_topic.name], name="score_metrics")
    async def score_metrics(stream: Any) -> None:
        """Validate metric events, update each VM's features and learners, publish."""
        async for events in stream.take_events(settings.batch_max_events,
                                               within=settings.batch_within_s):
            await handle(events, "score_metrics", metrics_topic.name, processor.process)

    @app.agent(topics[feedback_topic.name], name="apply_feedback")
    async def apply_feedback(stream: Any) -> None:
        """Teach each VM (and its anomaly class, fleet-wide) the operators' verdicts."""
        async for events in stream.take_events(settings.batch_max_events,
                                               within=settings.batch_within_s):
            await handle(events, "apply_feedback", feedback_topic.name,
                         processor.process_feedback)

    @app.agent(topics[host_usage_topic.name], name="track_hosts")
    async def track_hosts(stream: Any) -> None:
        """Keep each host's VMs from their reports: the ``hosts`` table (routed views) and
        the ``host-directory`` GlobalTable (placement on every worker)."""
        async for events in stream.take_events(settings.batch_max_events,
                                               within=settings.batch_within_s):
            latest: dict[bytes, tuple[int, HostState]] = {}
            started = time.perf_counter()
            async with turn:
                _current_event.set(None)
                for i, event in enumerate(events):
                    msg = event.message
                    report = decode_host_report(msg.value,
                                                max_bytes=settings.max_message_bytes)
                    if isinstance(report, Rejected):
                        await _refuse(report, msg)
                        continue
                    key = report.host_id.encode()
                    known = latest[key][1] if key in latest else _load_host(key)
                    latest[key] = (i, apply_report(
                        known, report, cpu_cores=settings.host_cpu_cores,
                        memory_bytes=settings.host_memory_bytes,
                        ttl_s=settings.host_report_ttl_s))
                    service.metrics.host_reports.inc()
                written = []
                for key, (index, host) in latest.items():
                    # Tied to the host's last report: the changelog partition of its key.
                    raw = host.to_json()
                    written.append(write_through(hosts, key, raw, events[index]))
                    written.append(write_through(host_directory, key, raw, events[index]))
                await asyncio.gather(*written)
            service.metrics.batch_seconds.labels(agent="track_hosts").observe(
                time.perf_counter() - started)

    def _load_host(key: bytes) -> HostState | None:
        raw = hosts.get(key)
        if raw is None:
            return None
        try:
            return HostState.from_json(raw)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("unreadable host state %s: %s", key.decode(errors="replace"), exc)
            return None

    async def _refuse(rejected: Rejected, msg: Any) -> None:
        dl = dead_letter(rejected, msg.value, key=msg.key, topic=msg.topic,
                         partition=msg.partition, offset=msg.offset, received_at=time.time())
        await topics[deadletter_topic.name].send(key=msg.key, value=to_json(dl))
        service.metrics.events_deadlettered.labels(reason=rejected.reason).inc()
