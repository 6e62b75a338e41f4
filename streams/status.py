"""What this worker has seen lately, kept in memory for the status page
(:mod:`streams.status_page`).

:class:`StatusBoard` is fed once per batch by the metrics agent with the batch's valid events,
each with what processing it produced (its alerts, forecasts and recommendations: the records
the agent publishes, as objects, so nothing is decoded again). It is pure: no Kafka, no Faust,
no clock (every call takes ``now``). It only knows what *this* worker processed, that is the
VMs of its input partitions.

Bounds (the constructor's defaults), so memory stays flat with any number of VMs:

* ``max_vms`` = 5,000 VMs tracked; the VM seen least recently is dropped first (LRU). A worker
  holding more VMs than that keeps the drill-down of the most recently seen ones only.
* ``samples_per_vm`` = 240 recent samples per VM, in a packed ring (timestamp as float64, the
  six metrics as float32: 7.5 KiB), plus its newest sample as an object and the latest
  forecast per metric, packed: 9.7 KiB per VM measured, at most ~48 MiB for 5,000 VMs.
* ``max_open_incidents`` = 1,000 open incidents (beyond that the one updated least recently
  is dropped and counted), ``max_resolved`` = 50 recently resolved ones,
  ``incidents_per_vm`` = 8 for a VM's drill-down, ``max_recommendations`` = 50.
* The events/s rate counts the batches of the last ``rate_window_s`` = 10 s (wall clock).

>>> from agents.pipeline import Outputs
>>> from schemas.records import MetricEvent
>>> board = StatusBoard(max_vms=2, samples_per_vm=3)
>>> events = [MetricEvent(vm, "h-1", float(t), 10.0 * t, 1e9, 4e9, 2, 0.0, 0.0, 1e5, 2e5)
...           for vm in ("vm-a", "vm-b", "vm-c") for t in range(5)]
>>> board.observe(100.0, [(ev, Outputs()) for ev in events])
>>> list(board.vms), board.vms_evicted_total
(['vm-b', 'vm-c'], 1)
>>> board.vm_view("vm-c")["series"]["cpu_pct"]
[20.0, 30.0, 40.0]
"""

from __future__ import annotations

import heapq
import struct
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import chain
from operator import attrgetter
from typing import Any, Protocol

from schemas.records import METRIC_FIELDS, Alert, Forecast, MetricEvent, Recommendation
from streams.observability import partition_lag

SEVERITY_RANK = {"critical": 4, "high": 3, "medium": 2, "low": 1}
#: recommendation fields the page shows
_REC_FIELDS = ("recommendation_id", "vm_id", "host_id", "timestamp", "action", "confidence",
               "reasons", "current_vcpus", "target_vcpus", "current_memory_bytes",
               "target_memory_bytes", "target_host", "pattern", "valid_until")


def _short(x: float) -> float:
    """``x`` to 6 significant digits (the rings hold float32: more digits are noise)."""
    return float(f"{x:.6g}")


#: one sample in a ring: the timestamp (float64), then the six metrics (float32)
_ROW = struct.Struct("<d6f")


class SampleRing:
    """The last ``capacity`` samples of one VM, packed in one buffer (32 bytes a sample)."""

    __slots__ = ("buffer", "capacity", "next", "size")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.next = 0  # where the next sample goes
        self.size = 0
        self.buffer = bytearray(_ROW.size * capacity)

    def append(self, ev: MetricEvent) -> None:
        i = self.next
        _ROW.pack_into(self.buffer, i * _ROW.size, ev.timestamp, ev.cpu_pct,
                       ev.memory_used_bytes, ev.disk_read_bytes_per_s, ev.disk_write_bytes_per_s,
                       ev.net_rx_bytes_per_s, ev.net_tx_bytes_per_s)
        self.next = (i + 1) % self.capacity
        if self.size < self.capacity:
            self.size += 1

    def rows(self) -> list[tuple[float, ...]]:
        """(timestamp, six metrics) per sample, oldest first."""
        start = (self.next - self.size) % self.capacity
        return [_ROW.unpack_from(self.buffer, ((start + k) % self.capacity) * _ROW.size)
                for k in range(self.size)]

    def series(self) -> tuple[list[float], dict[str, list[float]]]:
        """Timestamps and, per metric, values, oldest first."""
        rows = self.rows()
        return ([r[0] for r in rows],
                {m: [_short(r[j + 1]) for r in rows] for j, m in enumerate(METRIC_FIELDS)})


class Produced(Protocol):
    """What processing one event produced (:class:`agents.pipeline.Outputs` has these)."""

    @property
    def alerts(self) -> Sequence[Alert]: ...
    @property
    def forecasts(self) -> Sequence[Forecast]: ...
    @property
    def recommendations(self) -> Sequence[Recommendation]: ...


_FORECAST_3 = struct.Struct("<17d")
_HORIZON = attrgetter("horizon_s", "at", "value", "lower_90", "upper_90")


def _packed(fc: Forecast) -> tuple[str, bytes]:
    """A forecast as the board keeps it: its model, and the float64s timestamp, step_s, then
    horizon_s, at, value, lower_90, upper_90 per horizon (~170 bytes, not ~1 KB of objects).
    This runs for every forecast published: the usual three horizons are unrolled."""
    hs = fc.horizons
    if len(hs) == 3:
        a, b, c = hs
        return fc.model, _FORECAST_3.pack(
            fc.timestamp, fc.step_s, a.horizon_s, a.at, a.value, a.lower_90, a.upper_90,
            b.horizon_s, b.at, b.value, b.lower_90, b.upper_90,
            c.horizon_s, c.at, c.value, c.lower_90, c.upper_90)
    return fc.model, struct.pack(f"<{2 + 5 * len(hs)}d", fc.timestamp, fc.step_s,
                                 *chain.from_iterable(map(_HORIZON, hs)))


@dataclass(slots=True)
class Incident:
    """One incident as its alerts told it (event time)."""

    incident_id: str
    vm_id: str
    host_id: str
    anomaly_class: str
    severity: str
    status: str  # open, update or resolved
    started_at: float
    last_at: float  # the latest alert's timestamp
    score: float
    ended_at: float | None = None
    #: the features the opening or latest alert named: name, value, baseline, zscore
    features: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.ended_at is None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class VMTrack:
    """What the board keeps of one VM."""

    #: its newest sample (host, vCPUs, memory size and the latest values, at the cost of one
    #: reference per event)
    last: MetricEvent
    ring: SampleRing
    #: metric -> its latest forecast, packed (:func:`_packed`)
    forecasts: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    #: its latest incidents, oldest first (a list: a deque costs 10 times the memory empty)
    incidents: list[Incident] = field(default_factory=list)


def consumer_lag(end_offsets: Mapping[Any, int], read_offsets: Mapping[Any, int]
                 ) -> dict[str, int]:
    """Messages not yet read per topic, from Faust's monitor: ``end_offsets`` (the next offset
    to be written) and ``read_offsets`` (the last offset read) by topic partition.

    >>> from collections import namedtuple
    >>> TP = namedtuple("TP", "topic partition")
    >>> consumer_lag({TP("a", 0): 10, TP("a", 1): 5}, {TP("a", 0): 6})
    {'a': 8}
    """
    lag: dict[str, int] = {}
    for tp, n in partition_lag(end_offsets, read_offsets).items():
        lag[tp.topic] = lag.get(tp.topic, 0) + n
    return lag


class StatusBoard:
    """Recent samples, forecasts, incidents and recommendations of this worker's VMs."""

    def __init__(self, *, max_vms: int = 5000, samples_per_vm: int = 240,
                 max_open_incidents: int = 1000, max_resolved: int = 50,
                 incidents_per_vm: int = 8, max_recommendations: int = 50,
                 rate_window_s: float = 10.0, created_at: float | None = None) -> None:
        self.max_vms = max_vms
        self.samples_per_vm = samples_per_vm
        self.max_open_incidents = max_open_incidents
        self.incidents_per_vm = incidents_per_vm
        self.rate_window_s = rate_window_s
        self.created_at = created_at
        self.vms: OrderedDict[str, VMTrack] = OrderedDict()  # least recently seen first
        self.open: OrderedDict[str, Incident] = OrderedDict()  # least recently updated first
        self.resolved: deque[Incident] = deque(maxlen=max_resolved)
        self.recommendations: deque[dict[str, Any]] = deque(maxlen=max_recommendations)
        self._batches: deque[tuple[float, int]] = deque()  # (wall clock, events)
        self.events_total = 0
        self.vms_evicted_total = 0
        self.open_dropped_total = 0
        self.last_batch_at: float | None = None

    # -- feeding ---------------------------------------------------------------------------

    def observe(self, now: float, events: Sequence[tuple[MetricEvent, Produced]]) -> None:
        """One processed batch: each valid event with what it produced, in order."""
        if self.created_at is None:
            self.created_at = now
        vms = self.vms
        for ev, out in events:  # the per-event cost of the board: keep it small
            track = vms.get(ev.vm_id)
            if track is None:
                track = vms[ev.vm_id] = VMTrack(ev, SampleRing(self.samples_per_vm))
                if len(vms) > self.max_vms:
                    vms.popitem(last=False)
                    self.vms_evicted_total += 1
            else:
                if ev.timestamp <= track.last.timestamp:
                    continue  # late or replayed: the pipeline does not learn it either
                vms.move_to_end(ev.vm_id)
                track.last = ev
            track.ring.append(ev)
            if out.forecasts:
                for fc in out.forecasts:
                    track.forecasts[fc.metric] = _packed(fc)
            if out.alerts:
                for alert in out.alerts:
                    self._alert(alert, track)
            if out.recommendations:
                self.recommendations.extend(
                    {k: getattr(r, k) for k in _REC_FIELDS} for r in out.recommendations)
        if events:
            self.events_total += len(events)
            self._batches.append((now, len(events)))
            self.last_batch_at = now
        self._prune(now)

    def _alert(self, a: Alert, track: VMTrack) -> None:
        inc = self.open.get(a.incident_id)
        if inc is None:
            inc = Incident(a.incident_id, a.vm_id, a.host_id, a.anomaly_class, a.severity,
                           a.status, a.started_at, a.timestamp, a.score)
        if all(i is not inc for i in track.incidents):
            track.incidents.append(inc)
            del track.incidents[:-self.incidents_per_vm]
        inc.status, inc.last_at = a.status, a.timestamp
        inc.severity, inc.anomaly_class, inc.score = a.severity, a.anomaly_class, a.score
        if a.features:
            inc.features = [asdict(f) for f in a.features[:3]]
        if a.status == "resolved":
            inc.ended_at = a.timestamp
            self.open.pop(inc.incident_id, None)
            self.resolved.append(inc)
            return
        self.open[inc.incident_id] = inc
        self.open.move_to_end(inc.incident_id)
        if len(self.open) > self.max_open_incidents:
            self.open.popitem(last=False)
            self.open_dropped_total += 1

    def _prune(self, now: float) -> None:
        batches = self._batches
        while batches and batches[0][0] <= now - self.rate_window_s:
            batches.popleft()

    def retain(self, keep: Callable[[str], bool]) -> int:
        """Forget the VMs (and their open incidents) for which ``keep(vm_id)`` is false, e.g.
        those whose partitions another worker now owns; how many VMs were dropped."""
        gone = [vm for vm in self.vms if not keep(vm)]
        for vm in gone:
            del self.vms[vm]
        for incident_id in [i for i, inc in self.open.items() if not keep(inc.vm_id)]:
            del self.open[incident_id]
        return len(gone)

    # -- reading ---------------------------------------------------------------------------

    def events_per_s(self, now: float) -> float:
        """Events processed per second over the last ``rate_window_s`` (or since the board
        started, if that is shorter)."""
        self._prune(now)
        if not self._batches or self.created_at is None:
            return 0.0
        span = min(self.rate_window_s, max(1.0, now - self.created_at))
        return sum(n for _, n in self._batches) / span

    def open_incidents(self) -> list[Incident]:
        """Open incidents, most severe first, then newest first."""
        return sorted(self.open.values(),
                      key=lambda i: (-SEVERITY_RANK.get(i.severity, 0), -i.started_at))

    def busiest(self, n: int = 10) -> list[dict[str, Any]]:
        """The ``n`` VMs with the highest CPU in their latest sample."""
        top = heapq.nlargest(n, self.vms.items(), key=lambda kv: kv[1].last.cpu_pct)
        open_by_vm = {i.vm_id: i for i in self.open.values()}
        out = []
        for vm_id, track in top:
            last = track.last
            inc = open_by_vm.get(vm_id)
            out.append({
                "vm_id": vm_id, "host_id": last.host_id, "timestamp": last.timestamp,
                **last.metrics(), "memory_total_bytes": last.memory_total_bytes,
                "vcpus": last.vcpus,
                "open_incident": None if inc is None else {
                    "anomaly_class": inc.anomaly_class, "severity": inc.severity}})
        return out

    def summary(self, now: float, lag: Mapping[str, int] | None = None, *,
                metrics_topic: str = "", limit: int = 100, busiest: int = 10
                ) -> dict[str, Any]:
        """The JSON of ``GET /status.json``."""
        lag = dict(lag or {})
        opened = self.open_incidents()
        last_ts = max((t.last.timestamp for t in self.vms.values()), default=None)
        return {
            "scope": "this worker's partitions",
            "now": now,
            "events_per_s": round(self.events_per_s(now), 2),
            "rate_window_s": self.rate_window_s,
            "events_total": self.events_total,
            "last_batch_at": self.last_batch_at,
            "last_event_timestamp": last_ts,
            "consumer_lag": {"total": sum(lag.values()), "input": lag.get(metrics_topic),
                             "input_topic": metrics_topic, "by_topic": lag},
            "vms_tracked": len(self.vms),
            "vms_evicted_total": self.vms_evicted_total,
            "open_incidents_total": len(opened),
            "open_incidents_dropped_total": self.open_dropped_total,
            "open_incidents": [i.to_json() for i in opened[:limit]],
            "resolved_incidents": [i.to_json() for i in reversed(self.resolved)],
            "recommendations": [{**r, "reasons": list(r["reasons"])}
                                for r in reversed(self.recommendations)],
            "busiest_vms": self.busiest(busiest),
            "bounds": self.bounds(),
        }

    def bounds(self) -> dict[str, Any]:
        return {"max_vms": self.max_vms, "samples_per_vm": self.samples_per_vm,
                "max_open_incidents": self.max_open_incidents,
                "max_resolved": self.resolved.maxlen,
                "incidents_per_vm": self.incidents_per_vm,
                "max_recommendations": self.recommendations.maxlen}

    def vm_view(self, vm_id: str) -> dict[str, Any] | None:
        """The JSON of ``GET /status/vms/{vm_id}``, or None for a VM the board does not hold:
        recent series per metric, the latest forecast per metric with its 90 % band, and the
        VM's recent incidents (event time throughout)."""
        track = self.vms.get(vm_id)
        if track is None:
            return None
        timestamps, series = track.ring.series()
        forecasts = {}
        for metric, (model, packed) in track.forecasts.items():
            p = struct.unpack(f"<{len(packed) // 8}d", packed)
            forecasts[metric] = {
                "timestamp": p[0], "step_s": p[1], "model": model,
                "points": [{"horizon_s": p[k], "at": p[k + 1], "value": p[k + 2],
                            "lower_90": p[k + 3], "upper_90": p[k + 4]}
                           for k in range(2, len(p), 5)]}
        return {
            "vm_id": vm_id,
            "host_id": track.last.host_id,
            "scope": "this worker's partitions",
            "vcpus": track.last.vcpus,
            "memory_total_bytes": track.last.memory_total_bytes,
            "samples": len(timestamps),
            "timestamps": timestamps,
            "series": series,
            "forecasts": forecasts,
            "incidents": [i.to_json() for i in track.incidents],
        }
