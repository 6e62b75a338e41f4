"""Batch processing of ``vm.metrics`` messages, free of Kafka and Faust.

:class:`MetricsProcessor` turns a batch of raw input messages into everything the agent must
do: records to publish per topic, dead letters, messages to re-key, and the VM states to write
back (once per VM per batch, each tied to the last message of that VM so that the table's
changelog partition is the input partition). Decoded states are cached in memory; the table
stays the source of truth and the agent clears the cache when partitions move.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agents.pipeline import PipelineConfig, VMState, new_state, process_event
from schemas.records import to_json
from schemas.validate import Rejected, dead_letter, decode_metric
from streams.observability import WorkerMetrics
from streams.state_codec import StateCodec, StateIntegrityError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Inbound:
    """One raw message as read from Kafka."""

    key: bytes | None
    value: bytes
    topic: str
    partition: int
    offset: int


@dataclass
class BatchResult:
    """What the agent publishes and writes after a batch (keys are UTF-8 vm_ids)."""

    alerts: list[tuple[bytes, bytes]] = field(default_factory=list)
    forecasts: list[tuple[bytes, bytes]] = field(default_factory=list)
    recommendations: list[tuple[bytes, bytes]] = field(default_factory=list)
    deadletters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    rekeyed: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: vm key -> (index in the batch of that VM's last message, encoded state)
    states: dict[bytes, tuple[int, bytes]] = field(default_factory=dict)
    processed: int = 0


class MetricsProcessor:
    """Validate, process and collect the outputs of a batch of metric messages."""

    def __init__(self, cfg: PipelineConfig, codec: StateCodec,
                 load_state: Callable[[bytes], bytes | None], metrics: WorkerMetrics, *,
                 max_message_bytes: int = 65536, max_future_skew_s: float = 300.0) -> None:
        self.cfg = cfg
        self.codec = codec
        self.load_state = load_state
        self.metrics = metrics
        self.max_message_bytes = max_message_bytes
        self.max_future_skew_s = max_future_skew_s
        self.cache: dict[bytes, VMState] = {}

    def forget(self) -> None:
        """Drop cached states (call when partitions are revoked or reassigned)."""
        self.cache.clear()
        self.metrics.cached_vms.set(0)

    def _state(self, key: bytes) -> VMState:
        state = self.cache.get(key)
        if state is not None:
            return state
        raw = self.load_state(key)
        if raw is not None:
            try:
                state = self.codec.loads(raw)
            except StateIntegrityError as exc:
                self.metrics.state_load_failures.inc()
                log.error("refusing stored state of vm %s: %s", key.decode(errors="replace"),
                          exc)
        if not isinstance(state, VMState):
            state = new_state(self.cfg)
        self.cache[key] = state
        return state

    def process(self, batch: Sequence[Inbound], now: float) -> BatchResult:
        result = BatchResult()
        touched: dict[bytes, int] = {}
        for i, msg in enumerate(batch):
            self.metrics.events_in.labels(topic=msg.topic).inc()
            ev = decode_metric(msg.value, now=now, max_bytes=self.max_message_bytes,
                               max_future_skew_s=self.max_future_skew_s)
            if isinstance(ev, Rejected):
                dl = dead_letter(ev, msg.value, key=msg.key, topic=msg.topic,
                                 partition=msg.partition, offset=msg.offset, received_at=now)
                result.deadletters.append((msg.key, to_json(dl)))
                self.metrics.events_deadlettered.labels(reason=ev.reason).inc()
                continue
            key = ev.vm_id.encode()
            if msg.key != key:
                result.rekeyed.append((key, msg.value))
                self.metrics.events_rekeyed.inc()
                continue
            out = process_event(self._state(key), ev, self.cfg)
            result.alerts.extend((key, to_json(a)) for a in out.alerts)
            result.forecasts.extend((key, to_json(f)) for f in out.forecasts)
            result.recommendations.extend((key, to_json(r)) for r in out.recommendations)
            touched[key] = i
            result.processed += 1
        self.metrics.events_processed.inc(result.processed)
        self.metrics.cached_vms.set(len(self.cache))
        for key, index in touched.items():
            result.states[key] = (index, self.codec.dumps(self.cache[key]))
        return result
