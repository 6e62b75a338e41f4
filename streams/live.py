"""The live board of ``novacron run`` on a terminal: state and rendering, no I/O.

:class:`LiveBoard` is fed every record the runner reads (``observe``) and turned into the
lines of one screen (``render``), redrawn every couple of seconds by :mod:`streams.runner`.
It shows the worker's throughput and lag, the busiest VMs (by the cpu cores they used in
their latest ``vm.host-usage`` report), the open incidents (``vm.alerts``: opened or updated,
gone once resolved) and the latest recommendations.

>>> board = LiveBoard()
>>> board.observe("vm.alerts", {"incident_id": "vm-1/cpu_spike/0", "vm_id": "vm-1",
...     "host_id": "h-1", "timestamp": 60.0, "status": "open", "severity": "high",
...     "anomaly_class": "cpu_spike", "score": 0.8, "started_at": 0.0})
>>> board.open_incidents()
['vm-1/cpu_spike/0']
>>> board.observe("vm.alerts", {"incident_id": "vm-1/cpu_spike/0", "status": "resolved"})
>>> board.open_incidents()
[]
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Mapping
from typing import Any

from streams.tail import (
    SEVERITIES,
    Column,
    Palette,
    format_bytes,
    format_time,
    render_row,
    short_reasons,
)

PROCESSED = "novacron_events_processed_total"
LAG = "novacron_consumer_lag_messages"
DEADLETTERED = "novacron_events_deadlettered_total"
#: Topics the board reads (before the deployment's prefix).
TOPICS = ("vm.alerts", "vm.recommendations", "vm.forecasts", "vm.deadletter", "vm.host-usage")

_BUSY_COLUMNS = (Column("VM", 10), Column("HOST", 10), Column("CPU CORES", 13, True),
                 Column("CPU", 5, True), Column("MEMORY USED", 21, True),
                 Column("AS OF (UTC)", 11))
_INCIDENT_COLUMNS = (Column("SEVERITY", 8), Column("CLASS", 18), Column("VM", 10),
                     Column("HOST", 10), Column("SINCE (UTC)", 11), Column("SCORE", 5, True),
                     Column("INCIDENT"))
_RECOMMENDATION_COLUMNS = (Column("TIME (UTC)", 11), Column("VM", 10), Column("ACTION", 10),
                           Column("VCPU", 5), Column("MEM GiB", 9), Column("TARGET", 8),
                           Column("CONF", 4, True), Column("REASONS"))
_SHORT_TIME = "%m-%d %H:%M"


class RateMeter:
    """Per-second rate of a growing counter between two readings.

    >>> m = RateMeter()
    >>> m.update(100.0, now_s=10.0), m.update(250.0, now_s=13.0)
    (0.0, 50.0)
    """

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None

    def update(self, value: float, now_s: float) -> float:
        last, self._last = self._last, (value, now_s)
        if last is None or now_s <= last[1] or value < last[0]:
            return 0.0
        return (value - last[0]) / (now_s - last[1])


class LiveBoard:
    """What the live view knows: counts per topic, each VM's latest usage, the open
    incidents and the latest ``rows`` recommendations. Each record's cells are made when it
    is observed, so a malformed record is refused there and never breaks a redraw."""

    def __init__(self, rows: int = 8) -> None:
        self.rows = rows
        self.counts: Counter[str] = Counter()
        #: vm_id -> (report time, cpu cores used, share of its vCPUs used, cells)
        self._usage: dict[str, tuple[float, float, float, list[str]]] = {}
        #: incident_id -> (severity rank, started at, severity, cells)
        self._incidents: dict[str, tuple[int, float, str, list[str]]] = {}
        #: (action, cells), newest first
        self._recommendations: deque[tuple[str, list[str]]] = deque(maxlen=rows)
        #: one line shown under the header (e.g. "replay finished")
        self.note = ""
        #: where to look further (e.g. the worker's status page), shown under the title
        self.links = ""

    def observe(self, topic: str, record: Mapping[str, Any]) -> None:
        """Take one record of ``topic`` (its base name, e.g. ``vm.alerts``); records
        without the fields the board needs are counted as ``malformed`` and left out."""
        self.counts[topic] += 1
        try:
            if topic == "vm.host-usage":
                self._observe_usage(record)
            elif topic == "vm.alerts":
                self._observe_alert(record)
            elif topic == "vm.recommendations":
                self._recommendations.appendleft((record["action"], [
                    format_time(record["timestamp"], _SHORT_TIME), record["vm_id"],
                    record["action"], f"{record['current_vcpus']}->{record['target_vcpus']}",
                    f"{record['current_memory_bytes'] / 2**30:.1f}->"
                    f"{record['target_memory_bytes'] / 2**30:.1f}",
                    record.get("target_host") or "-", f"{record['confidence']:.2f}",
                    short_reasons(record["reasons"], 1000)]))
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            self.counts["malformed"] += 1

    def _observe_usage(self, r: Mapping[str, Any]) -> None:
        vm = r["vm_id"]
        if r.get("gone"):
            self._usage.pop(vm, None)
            return
        ts, used, vcpus = float(r["timestamp"]), float(r["cpu_cores_used"]), float(r["vcpus"])
        last = self._usage.get(vm)
        if last is not None and ts < last[0]:
            return  # an older report read late
        share = used / vcpus if vcpus else 0.0
        memory = (f"{format_bytes(r.get('memory_used_bytes', 0))} / "
                  f"{format_bytes(r.get('memory_bytes', 0))}")
        self._usage[vm] = (ts, used, share, [vm, r["host_id"], f"{used:.2f} / {vcpus:g}",
                                             f"{100 * share:.0f}%", memory,
                                             format_time(ts, _SHORT_TIME)])

    def _observe_alert(self, a: Mapping[str, Any]) -> None:
        incident = a["incident_id"]
        if a["status"] == "resolved":
            self._incidents.pop(incident, None)
            return
        severity = a["severity"]
        if severity not in SEVERITIES:
            raise ValueError(f"unknown severity {severity!r}")
        started = float(a["started_at"])
        self._incidents[incident] = (SEVERITIES.index(severity), started, severity, [
            severity, a["anomaly_class"], a["vm_id"], a["host_id"],
            format_time(started, _SHORT_TIME), f"{a['score']:.2f}", incident])

    def busiest(self) -> list[str]:
        """The ``rows`` VMs that used the most cpu cores in their latest report."""
        return sorted(self._usage, key=lambda vm: (-self._usage[vm][1], vm))[: self.rows]

    def open_incidents(self) -> list[str]:
        """Ids of the open incidents, the most severe first, then the oldest."""
        return sorted(self._incidents, key=lambda i: (-self._incidents[i][0],
                                                      self._incidents[i][1], i))

    def recommendations(self) -> list[list[str]]:
        """The cells of the latest recommendations, newest first."""
        return [cells for _, cells in self._recommendations]

    def render(self, width: int, counters: Mapping[str, float], *, replayed: int,
               events_per_s: float, palette: Palette | None = None,
               height: int | None = None, now_s: float | None = None) -> list[str]:
        """The screen's lines, each at most ``width`` characters (before colors), at most
        ``height`` of them; ``counters`` are the worker's Prometheus samples summed over
        labels, ``LAG`` that of the metrics topic (:func:`streams.runner.view_counters`;
        ``{}`` if the worker does not answer)."""
        paint = palette or Palette(False)
        lines: list[tuple[str, str | None]] = []

        def table(columns: tuple[Column, ...], rows: list[tuple[list[str], str | None]],
                  empty: str) -> None:
            lines.append((render_row([c.title for c in columns], columns), "dim"))
            lines.extend((render_row(cells, columns), style) for cells, style in rows)
            if not rows:
                lines.append((empty, "dim"))

        when = format_time(time.time() if now_s is None else now_s)
        lines.append((f"NovaCron live  {when} UTC  (redrawn every 2 s; Ctrl-C stops)", "bold"))
        if self.links:
            lines.append((self.links, "dim"))
        if counters:
            lines.append((f"worker: processed {counters.get(PROCESSED, 0):,.0f} events "
                          f"({events_per_s:,.0f}/s) | metrics lag {counters.get(LAG, 0):,.0f}"
                          f" | dead letters {counters.get(DEADLETTERED, 0):,.0f}", None))
        else:
            lines.append(("worker: metrics unavailable", "dim"))
        lines.append((f"replayed {replayed:,} | alerts {self.counts['vm.alerts']:,} | "
                      f"forecasts {self.counts['vm.forecasts']:,} | recommendations "
                      f"{self.counts['vm.recommendations']:,}", None))
        if self.note:
            lines.append((self.note, "dim"))

        lines.append(("", None))
        lines.append((f"BUSIEST VMS  by cpu cores used in their latest vm.host-usage report "
                      f"(top {self.rows})", "bold"))
        table(_BUSY_COLUMNS, [(self._usage[vm][3], "high" if self._usage[vm][2] >= 0.9
                               else None) for vm in self.busiest()], "(no usage reported yet)")

        incidents = self.open_incidents()
        lines.append(("", None))
        lines.append((f"OPEN INCIDENTS ({len(incidents)})", "bold"))
        table(_INCIDENT_COLUMNS, [(self._incidents[i][3], self._incidents[i][2])
                                  for i in incidents[: self.rows]], "(none)")
        if len(incidents) > self.rows:
            lines.append((f"... and {len(incidents) - self.rows} more", "dim"))

        lines.append(("", None))
        lines.append((f"LATEST RECOMMENDATIONS (last {self.rows})", "bold"))
        table(_RECOMMENDATION_COLUMNS, [(cells, action) for action, cells
                                        in self._recommendations], "(none yet)")

        if height is not None:
            lines = lines[: max(1, height)]
        return [paint.paint(_fit(text, width), style) for text, style in lines]


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"
