"""Batch processing of ``vm.metrics`` and ``vm.feedback`` messages, free of Kafka and Faust.

:class:`MetricsProcessor` turns a batch of raw input messages into everything the agent must
do: records to publish per topic, dead letters, messages to re-key, and the VM states to write
back, each in the partition its messages came from (the table's changelog partition is the
input partition). Decoded states are cached in memory; the table stays the source of truth and
the agent clears the cache when partitions move.

A state is written at most once per batch, and with ``state_flush_s`` > 0 less often still: a
VM's state is written at once when its batch published an alert, a recommendation or a drift
event (so that those are never published again by a worker that takes the partition over),
and otherwise kept *dirty* in memory for ``state_flush_s`` after it first changed, then
written with a batch that finds it due. Encoding, compressing and sending a VM's whole state
on every event is what bounds a worker that holds many VMs; writing each VM on its own clock
spreads that work out. VMs that start together (a worker catching up on a backlog, or a
fleet that starts at once) come due together, so a batch writes at most
:data:`WRITES_PER_EVENT` due states per event it processed (and at least
:data:`MIN_WRITES_PER_BATCH`), oldest first: a burst of due states is written over the next
batches instead of stalling the stream while thousands are encoded at once. The learned
mark of a partition (:mod:`agents.offsets`) is the offset of the first message whose state is
still unwritten (:meth:`MetricsProcessor.settled`), so a worker that dies leaves at most the
last ``state_flush_s`` of input to be read and learned again.

Feedback (:meth:`MetricsProcessor.process_feedback`) goes through the same cache: a verdict is
routed by the vm_id inside its incident id, teaches that VM's state, and counts towards its
anomaly class fleet-wide in the ``class-feedback`` table (one signed
:class:`~agents.anomaly.feedback.ClassSensitivity` per feedback partition, written by the
worker that owns the partition; the processor reads and adds up all of them).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from agents.anomaly.feedback import ClassSensitivity
from agents.anomaly.pool import DetectorPool
from agents.expiry import IdleTracker
from agents.forecasting.fleet import ForecasterPool
from agents.pipeline import (
    Outputs,
    PipelineConfig,
    VMState,
    apply_feedback,
    new_state,
)
from agents.scaling.patterns import PATTERNS
from agents.scaling.placement import HostState
from agents.stepper import step_events
from schemas.records import MetricEvent, to_json
from schemas.validate import Rejected, dead_letter, decode_feedback, decode_metric, incident_vm_id
from streams.observability import WorkerMetrics
from streams.state_codec import StateCodec, StateIntegrityError

log = logging.getLogger(__name__)

#: Due states a batch writes at most, per event processed (see the module docstring) ...
WRITES_PER_EVENT = 0.25
#: ... and at least, per batch.
MIN_WRITES_PER_BATCH = 32

#: how often a batch reads the host directory again, at most (seconds of wall clock)
HOSTS_REFRESH_S = 1.0


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
    drifts: list[tuple[bytes, bytes]] = field(default_factory=list)
    recommendations: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: host reports, keyed by host_id (topic vm.host-usage)
    host_reports: list[tuple[bytes, bytes]] = field(default_factory=list)
    deadletters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    rekeyed: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: vm key -> (partition of its messages, encoded state): the table writes
    states: dict[bytes, tuple[int, bytes]] = field(default_factory=dict)
    #: class-feedback key -> (index of the last feedback message of that partition, encoded)
    fleet: dict[bytes, tuple[int, bytes]] = field(default_factory=dict)
    #: each valid metric event of the batch with what it produced, in order (for the status
    #: board, streams.status)
    events: list[tuple[MetricEvent, Outputs]] = field(default_factory=list)
    processed: int = 0
    #: feedback messages applied to a recent incident
    feedback: int = 0


class HostDirectory(Mapping[str, HostState]):
    """Hosts by host_id, decoded from their stored JSON on first access: most batches
    recommend no move and need none of them. Unreadable entries are logged and left out."""

    def __init__(self, parts: dict[bytes, tuple[bytes, HostState | None]],
                 unreadable: dict[bytes, bytes]) -> None:
        self._parts = parts
        self._unreadable = unreadable  # key -> the value that could not be read

    def _decoded(self, key: bytes) -> HostState | None:
        raw, host = self._parts[key]
        if host is None and self._unreadable.get(key) != raw:
            try:
                host = HostState.from_json(raw)
            except (ValueError, KeyError, TypeError) as exc:  # logged once per value
                log.error("unreadable host-directory entry %s: %s",
                          key.decode(errors="replace"), exc)
                self._unreadable[key] = raw
            self._parts[key] = (raw, host)
        return host

    def __getitem__(self, host_id: str) -> HostState:
        key = host_id.encode()
        host = self._decoded(key) if key in self._parts else None
        if host is None:
            raise KeyError(host_id)
        return host

    def __iter__(self) -> Iterator[str]:
        return (key.decode() for key in list(self._parts) if self._decoded(key) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def fleet_key(partition: int) -> bytes:
    """The ``class-feedback`` key written by the owner of feedback partition ``partition``."""
    return f"partition-{partition}".encode()


class MetricsProcessor:
    """Validate, process and collect the outputs of a batch of metric messages."""

    def __init__(self, cfg: PipelineConfig, codec: StateCodec,
                 load_state: Callable[[bytes], bytes | None], metrics: WorkerMetrics, *,
                 load_fleet: Callable[[], Iterable[tuple[bytes, bytes]]] | None = None,
                 load_hosts: Callable[[], Iterable[tuple[bytes, bytes]]] | None = None,
                 max_message_bytes: int = 65536, max_future_skew_s: float = 300.0,
                 idle_expiry_s: float = 0.0, state_flush_s: float = 0.0) -> None:
        self.cfg = cfg
        self.codec = codec
        self.load_state = load_state
        #: every (key, signed ClassSensitivity) of the class-feedback table
        self.load_fleet = load_fleet
        #: every (host_id, HostState JSON) of the host-directory table
        self.load_hosts = load_hosts
        self._hosts: dict[bytes, tuple[bytes, HostState | None]] = {}
        self._unreadable_hosts: dict[bytes, bytes] = {}
        self._hosts_read_at = -math.inf
        self.metrics = metrics
        self.max_message_bytes = max_message_bytes
        self.max_future_skew_s = max_future_skew_s
        self.cache: dict[bytes, VMState] = {}
        #: the cached VMs' detectors, stepped a batch at a time (agents.stepper)
        self.pool = DetectorPool(cfg.metrics)
        self.forecaster_pool = ForecasterPool(cfg.forecast_horizons_s)
        #: class-feedback key -> (stored bytes, decoded or None if refused): decoded again
        #: only when the bytes change
        self._fleet_parts: dict[bytes, tuple[bytes, ClassSensitivity | None]] = {}
        #: fleet-wide verdicts per class, all partitions added up
        self.fleet = ClassSensitivity()
        #: when each VM last sent an event (wall clock), to forget idle ones; None: never
        self.idle = IdleTracker(idle_expiry_s) if idle_expiry_s > 0 else None
        #: how long a learned state may wait in memory before it is written (0: every batch)
        self.state_flush_s = state_flush_s
        #: vm key -> (topic, partition, offset of its first unwritten message, since when
        #: (wall clock)), for states learned since they were last written, oldest first
        self.dirty: dict[bytes, tuple[str, int, int, float]] = {}
        #: (topic, partition) -> the dirty keys of that partition, oldest first
        self._dirty_in: dict[tuple[str, int], dict[bytes, int]] = {}

    def forget(self) -> None:
        """Drop cached states (call when partitions are revoked or reassigned)."""
        self.cache.clear()
        self.pool = DetectorPool(self.cfg.metrics)  # states still held elsewhere keep theirs
        self.forecaster_pool = ForecasterPool(self.cfg.forecast_horizons_s)
        self.dirty.clear()
        self._dirty_in.clear()
        self.metrics.cached_vms.set(0)

    def _stored_state(self, key: bytes, *, cache: bool = True) -> VMState | None:
        """The VM's state from the cache or the table; None if it has none (or a bad one).
        With ``cache``, a state read from the table is kept decoded for the next batch."""
        state = self.cache.get(key)
        if state is not None:
            return state
        raw = self.load_state(key)
        if raw is None:
            return None
        try:
            loaded = self.codec.loads(raw, subject=key)
        except StateIntegrityError as exc:
            self.metrics.state_load_failures.inc()
            log.error("refusing stored state: %s", exc,
                      extra={"vm_id": key.decode(errors="replace")})
            return None
        if not isinstance(loaded, VMState):
            return None
        if cache:
            self.cache[key] = loaded
        return loaded

    def expire(self, held: Iterable[bytes], now: float) -> list[bytes]:
        """The VMs of ``held`` (keys of this worker's table partitions) idle for longer than
        the expiry, dropped from the cache: the caller deletes them from the table."""
        if self.idle is None:
            return []
        gone = self.idle.expired(held, now)
        for key in gone:
            self.idle.forget(key)
            state = self.cache.pop(key, None)
            if state is not None:
                state.detector.detach()
                state.forecasters.detach()
            self._clean(key)
        if gone:
            self.metrics.vms_expired.inc(len(gone))
            self.metrics.cached_vms.set(len(self.cache))
        return gone

    def state_of(self, key: bytes) -> VMState | None:
        """The VM's current state (cached, or from this worker's table partitions), or None
        for a VM this worker has never seen. Read only: a view asked for during a rebalance,
        before the table is recovered, must not leave a stale state for the agent to use."""
        return self._stored_state(key, cache=False)

    def install(self, key: bytes, state: VMState) -> None:
        """Make ``state`` the VM's cached state (a rollback restores a snapshot)."""
        old = self.cache.get(key)
        if old is not None:
            old.detector.detach()
            old.forecasters.detach()
        self.cache[key] = state

    def _state(self, key: bytes) -> VMState:
        state = self._stored_state(key)
        if state is None:
            state = self.cache[key] = new_state(self.cfg)
        return state

    def refresh_fleet(self) -> ClassSensitivity:
        """Read the class-feedback table again (decoding only values that changed)."""
        if self.load_fleet is None:
            return self.fleet
        parts: dict[bytes, tuple[bytes, ClassSensitivity | None]] = {}
        for key, raw in self.load_fleet():
            known = self._fleet_parts.get(key)
            if known is not None and known[0] == raw:
                parts[key] = known
                continue
            part: ClassSensitivity | None = None
            try:
                loaded = self.codec.loads(raw, subject=key)
            except StateIntegrityError as exc:  # counted and logged once per stored value
                self.metrics.state_load_failures.inc()
                log.error("refusing class-feedback %s: %s", key.decode(errors="replace"), exc)
            else:
                part = loaded if isinstance(loaded, ClassSensitivity) else None
            parts[key] = (raw, part)
        if parts != self._fleet_parts:
            self._fleet_parts = parts
            self._set_fleet()
        return self.fleet

    def _set_fleet(self) -> None:
        self.fleet = ClassSensitivity.merged(
            p for _, p in self._fleet_parts.values() if p is not None)
        for anomaly_class in self.fleet.counts:
            self.metrics.class_factor.labels(anomaly_class=anomaly_class).set(
                self.fleet.factor(anomaly_class))

    def count_patterns(self) -> dict[str, int]:
        """VMs in the cache per workload pattern; also sets the ``vm_patterns`` gauge."""
        counts: dict[str, int] = dict.fromkeys(PATTERNS, 0)
        for state in self.cache.values():
            pattern = state.scaling.patterns.pattern
            counts[pattern] = counts.get(pattern, 0) + 1
        for name, n in counts.items():
            self.metrics.vm_patterns.labels(pattern=name).set(n)
        return counts

    def hosts(self, now: float | None = None) -> HostDirectory | None:
        """Every known host as the host-directory table has it, each decoded when placement
        first asks for it (and only again when its value changed); None without a
        directory. With ``now`` (wall clock), the table is read again only when
        :data:`HOSTS_REFRESH_S` have passed since it last was: reading it walks the whole
        table, and hosts report every ``NOVACRON_HOST_REPORT_INTERVAL_S`` (60 s) anyway."""
        if self.load_hosts is None:
            return None
        if now is None or now - self._hosts_read_at >= HOSTS_REFRESH_S:
            self._hosts = {key: known if (known := self._hosts.get(key)) is not None
                           and known[0] == raw else (raw, None)
                           for key, raw in self.load_hosts()}
            self._hosts_read_at = now if now is not None else -math.inf
        return HostDirectory(self._hosts, self._unreadable_hosts)

    def _deadletter(self, result: BatchResult, msg: Inbound, rejected: Rejected,
                    now: float) -> None:
        dl = dead_letter(rejected, msg.value, key=msg.key, topic=msg.topic,
                         partition=msg.partition, offset=msg.offset, received_at=now)
        result.deadletters.append((msg.key, to_json(dl)))
        self.metrics.events_deadlettered.labels(reason=rejected.reason).inc()

    def process(self, batch: Sequence[Inbound], now: float) -> BatchResult:
        """A batch of ``vm.metrics`` messages."""
        result = BatchResult()
        urgent: set[bytes] = set()
        fleet = self.refresh_fleet()
        hosts = self.hosts(now)
        accepted: list[tuple[Inbound, MetricEvent, bytes]] = []
        for topic, n in Counter(msg.topic for msg in batch).items():
            self.metrics.events_in.labels(topic=topic).inc(n)
        for msg in batch:
            ev = decode_metric(msg.value, now=now, max_bytes=self.max_message_bytes,
                               max_future_skew_s=self.max_future_skew_s)
            if isinstance(ev, Rejected):
                self._deadletter(result, msg, ev, now)
                continue
            key = ev.vm_id.encode()
            if msg.key != key:
                result.rekeyed.append((key, msg.value))
                self.metrics.events_rekeyed.inc()
                continue
            accepted.append((msg, ev, key))
        outs = step_events([(self._state(key), ev) for _, ev, key in accepted], self.cfg,
                           self.pool, fleet, hosts, self.forecaster_pool)
        for (msg, ev, key), out in zip(accepted, outs, strict=True):
            result.events.append((ev, out))
            result.alerts.extend((key, to_json(a)) for a in out.alerts)
            for a in out.alerts:
                if a.status == "open":
                    self.metrics.incidents.labels(anomaly_class=a.anomaly_class,
                                                  severity=a.severity).inc()
                    log.info("incident opened: %s, %s", a.anomaly_class, a.severity,
                             extra={"vm_id": a.vm_id, "host_id": a.host_id,
                                    "incident_id": a.incident_id})
            for d in out.drifts:
                self.metrics.drift_events.labels(metric=d.metric).inc()
                log.info("forecast drift: %s -> %s", d.model_before, d.model_after,
                         extra={"vm_id": d.vm_id, "metric": d.metric})
            for r in out.recommendations:
                if r.action == "migrate":
                    log.info("migrate to %s", r.target_host,
                             extra={"vm_id": r.vm_id, "host_id": r.host_id,
                                    "recommendation_id": r.recommendation_id})
            for metric, (err, actual) in out.forecast_errors.items():
                self.metrics.forecast_abs_error.labels(metric=metric).inc(err)
                self.metrics.forecast_abs_actual.labels(metric=metric).inc(actual)
            result.forecasts.extend((key, to_json(f)) for f in out.forecasts)
            result.drifts.extend((key, to_json(d)) for d in out.drifts)
            result.recommendations.extend((key, to_json(r)) for r in out.recommendations)
            result.host_reports.extend((h.host_id.encode(), to_json(h))
                                       for h in out.host_reports)
            for r in out.recommendations:
                self.metrics.recommendations.labels(action=r.action).inc()
            if out.alerts or out.recommendations or out.drifts:
                urgent.add(key)
            if key not in self.dirty:
                self.dirty[key] = (msg.topic, msg.partition, msg.offset, now)
                self._dirty_in.setdefault((msg.topic, msg.partition), {})[key] = msg.offset
            if self.idle is not None:
                self.idle.touch(key, now)
            result.processed += 1
        self.metrics.events_processed.inc(result.processed)
        self.metrics.cached_vms.set(len(self.cache))
        self._write(result, [key for key in urgent if key in self.dirty])
        budget = max(MIN_WRITES_PER_BATCH, int(WRITES_PER_EVENT * len(batch)))
        self._write(result, self._due(now, budget))
        return result

    def flush(self, now: float, everything: bool = False, limit: int | None = None
              ) -> BatchResult:
        """The dirty states that are due (``everything``: all of them), encoded, at most
        ``limit`` of them (oldest first): for a timer, as a worker whose input stopped must
        not keep learned state unwritten for long, and before a checkpoint."""
        result = BatchResult()
        self._write(result, list(self.dirty) if everything else self._due(now, limit))
        return result

    def settled(self, topic: str, partition: int, learned: int) -> int:
        """The learned mark of an input partition learned up to ``learned`` (the offset after
        its last message learned): the offset of its first message whose state is unwritten,
        or ``learned`` when every state is written."""
        waiting = self._dirty_in.get((topic, partition))
        return next(iter(waiting.values())) if waiting else learned

    def _due(self, now: float, limit: int | None = None) -> list[bytes]:
        due: list[bytes] = []
        for key, (_, _, _, since) in self.dirty.items():  # oldest first
            if now - since < self.state_flush_s or len(due) == limit:
                break
            due.append(key)
        return due

    def _clean(self, key: bytes) -> int | None:
        """Forget that ``key`` is dirty; its partition, if it was."""
        entry = self.dirty.pop(key, None)
        if entry is None:
            return None
        topic, partition = entry[0], entry[1]
        waiting = self._dirty_in[(topic, partition)]
        del waiting[key]
        if not waiting:
            del self._dirty_in[(topic, partition)]
        return partition

    def _write(self, result: BatchResult, keys: Iterable[bytes]) -> None:
        for key in keys:
            partition = self._clean(key)
            if partition is None:
                continue
            encoded = self.codec.dumps(self.cache[key], subject=key)
            self.metrics.state_bytes.observe(len(encoded))
            result.states[key] = (partition, encoded)

    def process_feedback(self, batch: Sequence[Inbound], now: float) -> BatchResult:
        """A batch of ``vm.feedback`` messages: verdicts on the VMs' recent incidents.

        Each verdict is routed by the vm_id inside its incident id (a message keyed otherwise
        is re-keyed), refused as ``unknown_incident`` when that VM has no such recent
        incident, and otherwise teaches the VM's state and its class's fleet-wide counts.
        ``states`` and ``fleet`` of the result are the table writes, each tied to the last
        message that touched it.
        """
        result = BatchResult()
        touched: dict[bytes, int] = {}
        fleet_touched: dict[bytes, int] = {}
        self.refresh_fleet()
        for i, msg in enumerate(batch):
            self.metrics.events_in.labels(topic=msg.topic).inc()
            fb = decode_feedback(msg.value, max_bytes=self.max_message_bytes)
            if isinstance(fb, Rejected):
                self._deadletter(result, msg, fb, now)
                continue
            vm_id = incident_vm_id(fb.incident_id)
            if vm_id is None:  # decode_feedback refuses these already
                self._deadletter(result, msg, Rejected("unknown_incident", "not an incident id"),
                                 now)
                continue
            key = vm_id.encode()
            if msg.key != key:
                result.rekeyed.append((key, msg.value))
                self.metrics.events_rekeyed.inc()
                continue
            state = self._stored_state(key)
            applied = apply_feedback(state, fb, self.cfg) if state is not None else None
            if applied is None:
                self._deadletter(result, msg, Rejected(
                    "unknown_incident",
                    f"vm {vm_id} has no recent incident {fb.incident_id}"), now)
                continue
            record, changed = applied
            self.metrics.feedback.labels(verdict=fb.verdict).inc()
            result.feedback += 1
            if not changed:
                continue  # the same verdict again (redelivered): nothing new to learn
            touched[key] = msg.partition
            part_key = fleet_key(msg.partition)
            part = self._fleet_parts.get(part_key)
            counts = part[1] if part is not None and part[1] is not None else ClassSensitivity()
            counts.record(record.anomaly_class, fb.verdict, record.ended_at)
            encoded = self.codec.dumps(counts, subject=part_key)
            self._fleet_parts[part_key] = (encoded, counts)
            fleet_touched[part_key] = i
        self.metrics.cached_vms.set(len(self.cache))
        for key, partition in touched.items():
            self._clean(key)  # written now, with everything it learned
            result.states[key] = (partition, self.codec.dumps(self.cache[key], subject=key))
        for part_key, index in fleet_touched.items():
            result.fleet[part_key] = (index, self._fleet_parts[part_key][0])
        if fleet_touched:
            self._set_fleet()
        return result
