"""Operator feedback: what a VM, and with less weight the fleet, learns from verdicts.

An operator answers an incident of ``vm.alerts`` with ``false_positive`` or ``confirmed``
(topic ``vm.feedback``). Three small, pure pieces turn that into sensitivity:

- :class:`RecentIncidents` remembers a VM's last incidents (id, class, when, and the peak of
  each kind of evidence that made them), so a verdict can be matched to what it is about;
- :class:`Sensitivity` is the VM's own memory of verdicts. A false positive remembers its
  *signature*: each metric whose evidence (of any kind) was strong in the incident, at the
  time-of-day slots the incident covered, with a *bar* a margin above the strength it reached.
  Similar samples later (same metrics, same time of day, no stronger than the bar allows) are
  scaled down below the alert threshold; anything clearly stronger, or on other metrics, or at
  another time, still alerts. Bars decay slowly back to neutral, and a suppressed repeat of the
  pattern restarts their clock (a pattern the operator called benign stays known while it
  recurs). A confirmed verdict makes the VM a little more sensitive to its metrics (bounded)
  and halves any bar over them;
- :class:`ClassSensitivity` counts verdicts per anomaly class, fleet-wide, and turns them into
  a small threshold factor (at most :attr:`ClassSensitivity.weight` either way): many false
  positives of a class make every VM slightly less eager to open that class, confirmations
  slightly more.

Evidence strength is the detector's weighted z-score (``Verdict.evidence``), whose squashed
maximum is compared to the alert threshold; :func:`z_for_score` gives the z-score of a
threshold. Everything here is synchronous and Kafka-free; state is bounded (a few KB per VM).

>>> sens, recent = Sensitivity(), RecentIncidents()
>>> z_thr = z_for_score(0.4)                      # z-score of the alert threshold
>>> night = {("disk_write_bytes_per_s", "extreme"): 12.0, ("cpu_pct", "level"): 1.0}
>>> recent.note("vm-1/io_bottleneck/7200", "io_bottleneck", 7200.0, night)
>>> sens.false_positive(recent.get("vm-1/io_bottleneck/7200"), z_thr, now=9000.0)
>>> next_night = sens.adjust(night, 86400.0 + 7200.0, z_thr)
>>> next_night[("disk_write_bytes_per_s", "extreme")] < z_thr   # the same pattern: below
True
>>> sens.adjust(night, 86400.0 + 50000.0, z_thr) == night        # another time of day: as is
True
>>> cpu = {("cpu_pct", "extreme"): 12.0}                          # other evidence: as is
>>> sens.adjust(cpu, 86400.0 + 7200.0, z_thr) == cpu
True
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

Key = tuple[str, str]
"""An evidence key of :class:`~agents.anomaly.vm.Verdict`: (metric, kind); kind "rarity" has
metric "*"."""

#: The evidence key a flatline (a stuck agent, not a z-score) is remembered and judged under.
FLATLINE_KEY: Key = ("*", "flatline")
DAY_S = 86400.0
VERDICTS = ("false_positive", "confirmed")


def z_for_score(score: float) -> float:
    """The weighted z-score whose squashed value (``z / (z + 10)``) is ``score``.

    >>> z_for_score(0.4), z_for_score(0.5)
    (6.666666666666667, 10.0)
    """
    score = min(max(score, 0.0), 0.999)
    return 10.0 * score / (1.0 - score)


def _decayed(value: float, since: float, now: float, halflife_s: float) -> float:
    """``value`` (an excess over neutral) after ``now - since`` seconds of half-life decay."""
    return value * 0.5 ** (max(0.0, now - since) / halflife_s)


class IncidentRecord:
    """What a VM remembers of one incident: enough to learn from a verdict on it."""

    __slots__ = ("anomaly_class", "ended_at", "incident_id", "peaks", "started_at", "verdict")

    def __init__(self, incident_id: str, anomaly_class: str, started_at: float) -> None:
        self.incident_id = incident_id
        self.anomaly_class = anomaly_class
        self.started_at = started_at
        #: time of the incident's last anomalous sample so far
        self.ended_at = started_at
        #: strongest weighted z-score of each evidence key while the incident was anomalous
        self.peaks: dict[Key, float] = {}
        #: the verdict already applied ("" while none), so a redelivered verdict is a no-op
        self.verdict = ""

    def __getstate__(self) -> tuple[str, str, float, float, dict[Key, float], str]:
        return (self.incident_id, self.anomaly_class, self.started_at, self.ended_at,
                self.peaks, self.verdict)

    def __setstate__(self, s: tuple[str, str, float, float, dict[Key, float], str]) -> None:
        (self.incident_id, self.anomaly_class, self.started_at, self.ended_at, self.peaks,
         self.verdict) = s

    def __repr__(self) -> str:
        return (f"IncidentRecord({self.incident_id!r}, {self.anomaly_class!r}, "
                f"{self.started_at:g}..{self.ended_at:g}, verdict={self.verdict!r})")


class RecentIncidents:
    """The last ``capacity`` incidents of a VM, by id (oldest forgotten first).

    Parameters
    ----------
    capacity
        Incidents remembered; a verdict on an older one is refused as unknown.
    keys
        Evidence keys remembered per incident (the strongest ones).
    """

    def __init__(self, capacity: int = 32, keys: int = 8) -> None:
        self.capacity = capacity
        self.keys = keys
        self.records: dict[str, IncidentRecord] = {}

    def note(self, incident_id: str, anomaly_class: str, timestamp: float,
             evidence: Mapping[Key, float]) -> None:
        """Record an anomalous sample of incident ``incident_id`` (opening it if new)."""
        rec = self.records.get(incident_id)
        if rec is None:
            rec = self.records[incident_id] = IncidentRecord(incident_id, anomaly_class,
                                                             timestamp)
            while len(self.records) > self.capacity:
                del self.records[next(iter(self.records))]
        rec.ended_at = max(rec.ended_at, timestamp)
        peaks = rec.peaks
        for key, z in evidence.items():
            if z > 0.0 and z > peaks.get(key, 0.0):
                peaks[key] = z
        if len(peaks) > self.keys:
            rec.peaks = dict(heapq.nlargest(self.keys, peaks.items(), key=lambda kv: kv[1]))

    def get(self, incident_id: str) -> IncidentRecord | None:
        return self.records.get(incident_id)

    def __len__(self) -> int:
        return len(self.records)


class Sensitivity:
    """A VM's memory of operator verdicts, applied to the detector's evidence.

    A false positive's signature is per metric and time-of-day slot: the kinds of evidence of
    one metric are views of one deviation (one night a burst shows as a level shift, the next
    as a new extreme), so the bar over a metric at a slot covers all of them. The joint-shape
    evidence (metric ``"*"``) and a flatline count as metrics of their own.

    Parameters
    ----------
    margin
        A false positive's bar over a metric is ``margin`` times the strongest evidence the
        metric showed in it: a repeat up to that strength is scaled below the threshold.
        Evidence is in decades, which grow as the square of a z-score in the normal tail:
        2.25 lets a repeat stand 1.5 times as many standard deviations out.
    slot_s
        Width of a time-of-day slot, seconds (a signature is a set of slots).
    pad_s
        Slack around a false positive's span, seconds (the same pattern a little earlier or
        later still matches).
    halflife_s
        Half-life of a bar's excess (and of a confirmed verdict's extra sensitivity), in the
        VM's own clock (sample timestamps).
    confirm_step, max_gain
        A confirmed verdict multiplies the evidence of its metrics by ``1 + confirm_step``
        more, up to ``max_gain`` in all.
    max_cells
        At most this many (metric, slot) bars are kept (the strongest).

    Examples
    --------
    >>> sens = Sensitivity()
    >>> rec = IncidentRecord("vm-1/cpu_spike/3600", "cpu_spike", 3600.0)
    >>> rec.peaks = {("cpu_pct", "extreme"): 9.0}
    >>> sens.confirmed(rec, z_thr=6.0, now=4000.0)
    >>> z = sens.adjust({("cpu_pct", "level"): 5.0}, 5000.0, z_thr=6.0)[("cpu_pct", "level")]
    >>> round(z, 2)                                   # 5 % more sensitive to cpu_pct
    5.25
    """

    def __init__(self, *, margin: float = 2.25, slot_s: float = 1800.0, pad_s: float = 1800.0,
                 halflife_s: float = 30 * DAY_S, confirm_step: float = 0.05,
                 max_gain: float = 1.2, max_cells: int = 256) -> None:
        self.margin = margin
        self.slot_s = slot_s
        self.pad_s = pad_s
        self.halflife_s = halflife_s
        self.confirm_step = confirm_step
        self.max_gain = max_gain
        self.max_cells = max_cells
        #: (metric, slot) -> (bar / threshold, when set); the bar's excess decays
        self.cells: dict[tuple[str, int], tuple[float, float]] = {}
        #: metric -> (gain, when set): extra sensitivity from confirmed verdicts
        self.gains: dict[str, tuple[float, float]] = {}

    # -- time of day -----------------------------------------------------------------------
    @property
    def slots_per_day(self) -> int:
        return max(1, round(DAY_S / self.slot_s))

    def slot(self, timestamp: float) -> int:
        return int((timestamp % DAY_S) / DAY_S * self.slots_per_day) % self.slots_per_day

    def span_slots(self, start: float, end: float) -> list[int]:
        """The slots from ``start - pad_s`` to ``end + pad_s``, around midnight if need be."""
        n = self.slots_per_day
        if end + self.pad_s - (start - self.pad_s) >= DAY_S:
            return list(range(n))
        first, last = self.slot(start - self.pad_s), self.slot(end + self.pad_s)
        count = (last - first) % n + 1
        return [(first + i) % n for i in range(count)]

    # -- effective values ------------------------------------------------------------------
    def _excess(self, cell: tuple[float, float], now: float) -> float:
        return _decayed(cell[0] - 1.0, cell[1], now, self.halflife_s)

    def bar(self, metric: str, timestamp: float) -> float:
        """The bar over ``metric`` at ``timestamp``, as a multiple of the threshold (1: none)."""
        cell = self.cells.get((metric, self.slot(timestamp)))
        return 1.0 if cell is None else 1.0 + self._excess(cell, timestamp)

    def gain(self, metric: str, timestamp: float) -> float:
        """The extra sensitivity to ``metric`` from confirmed verdicts (1: none)."""
        g = self.gains.get(metric)
        return 1.0 if g is None else 1.0 + self._excess(g, timestamp)

    @property
    def active(self) -> bool:
        return bool(self.cells or self.gains)

    # -- applying --------------------------------------------------------------------------
    def adjust(self, evidence: Mapping[Key, float], timestamp: float, z_thr: float
               ) -> Mapping[Key, float]:
        """The evidence of a sample as this VM's verdicts weigh it: ``z * gain / bar``.

        Returns ``evidence`` itself when nothing applies. A sample whose evidence would have
        crossed ``z_thr`` but is held below it by a bar is a repeat of a pattern the operator
        called benign: that bar's decay clock restarts.
        """
        if not self.active:
            return evidence
        slot = self.slot(timestamp)
        factors: dict[str, float] = {}
        held: set[str] = set()
        out: dict[Key, float] = {}
        for key, z in evidence.items():
            metric = key[0]
            f = factors.get(metric)
            if f is None:
                f = factors[metric] = self.gain(metric, timestamp) / self.bar(metric, timestamp)
            adjusted = out[key] = z * f
            if f < 1.0 and adjusted < z_thr <= z * self.gain(metric, timestamp):
                held.add(metric)
        for metric in held:  # the benign pattern recurs: its bar's decay starts again
            self.cells[(metric, slot)] = (self.cells[(metric, slot)][0], timestamp)
        if all(f == 1.0 for f in factors.values()):
            return evidence
        return out

    # -- learning --------------------------------------------------------------------------
    @staticmethod
    def _metric_peaks(record: IncidentRecord) -> dict[str, float]:
        peaks: dict[str, float] = {}
        for (metric, _), z in record.peaks.items():
            peaks[metric] = max(peaks.get(metric, 0.0), z)
        return peaks

    def false_positive(self, record: IncidentRecord, z_thr: float, now: float) -> None:
        """Learn that ``record`` was not a real incident: raise the bar over its signature."""
        slots = self.span_slots(record.started_at, record.ended_at)
        for metric, peak in self._metric_peaks(record).items():
            r = self.margin * peak / z_thr
            if r <= 1.0:
                continue  # this metric stayed well below the threshold: not the cause
            for s in slots:
                old = self.cells.get((metric, s))
                old_r = 1.0 if old is None else 1.0 + self._excess(old, now)
                self.cells[(metric, s)] = (max(old_r, r), now)
            self.gains.pop(metric, None)  # no extra sensitivity to evidence called benign
        self._prune(now)

    def confirmed(self, record: IncidentRecord, z_thr: float, now: float) -> None:
        """Learn that ``record`` was real: a little more sensitivity to its metrics."""
        slots = self.span_slots(record.started_at, record.ended_at)
        for metric, peak in self._metric_peaks(record).items():
            if self.margin * peak <= z_thr:
                continue
            g = min(self.max_gain, self.gain(metric, now) * (1.0 + self.confirm_step))
            self.gains[metric] = (g, now)
            for s in slots:
                old = self.cells.get((metric, s))
                if old is not None:
                    self.cells[(metric, s)] = (1.0 + self._excess(old, now) / 2.0, now)
        self._prune(now)

    def learn(self, record: IncidentRecord, verdict: str, z_thr: float, now: float) -> bool:
        """Apply ``verdict`` to ``record`` once; False if it was already applied."""
        if verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {verdict!r}")
        if record.verdict == verdict:
            return False
        if verdict == "false_positive":
            self.false_positive(record, z_thr, now)
        else:
            self.confirmed(record, z_thr, now)
        record.verdict = verdict
        return True

    def _prune(self, now: float) -> None:
        self.cells = {k: c for k, c in self.cells.items() if self._excess(c, now) > 0.01}
        if len(self.cells) > self.max_cells:
            self.cells = dict(heapq.nlargest(self.max_cells, self.cells.items(),
                                             key=lambda kc: self._excess(kc[1], now)))
        self.gains = {k: g for k, g in self.gains.items() if self._excess(g, now) > 0.001}


class ClassSensitivity:
    """Verdicts per anomaly class, counted fleet-wide: a small threshold factor per class.

    ``factor(cls)`` is ``1 + 2 * weight * (p - 1/2)`` where ``p`` is the share of false
    positives among the class's (decayed) verdicts, shrunk towards 1/2 by ``prior`` pseudo
    verdicts: 1 without verdicts, never beyond ``1 +- weight``. Evidence of an incident of that
    class is divided by it. Several writers (one per input partition) each keep their own
    counts; :meth:`merged` adds them up.

    Parameters
    ----------
    weight
        Largest change of the threshold, as a fraction (the per-VM bars go much further).
    prior
        Pseudo verdicts, half of each kind: a class moves only once many verdicts, from
        anywhere in the fleet, agree (a class is coarse: one VM's benign backup and another's
        real saturation can share it).
    halflife_s
        Half-life of the counts, in the VMs' clock.

    Examples
    --------
    >>> fleet = ClassSensitivity()
    >>> fleet.factor("io_bottleneck")
    1.0
    >>> for t in range(6):
    ...     fleet.record("io_bottleneck", "false_positive", 1000.0 * t)
    >>> round(fleet.factor("io_bottleneck"), 3), fleet.factor("cpu_spike")
    (1.037, 1.0)
    >>> other = ClassSensitivity()
    >>> other.record("io_bottleneck", "confirmed", 6000.0)
    >>> round(ClassSensitivity.merged([fleet, other]).factor("io_bottleneck"), 3)
    1.029
    """

    def __init__(self, *, weight: float = 0.1, prior: float = 10.0,
                 halflife_s: float = 30 * DAY_S) -> None:
        self.weight = weight
        self.prior = prior
        self.halflife_s = halflife_s
        #: class -> (false positives, confirmed, as of when)
        self.counts: dict[str, tuple[float, float, float]] = {}

    @property
    def min_factor(self) -> float:
        return 1.0 - self.weight

    def record(self, anomaly_class: str, verdict: str, timestamp: float) -> None:
        if verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {verdict!r}")
        fp, ok, t = self.counts.get(anomaly_class, (0.0, 0.0, timestamp))
        now = max(t, timestamp)
        decay = 0.5 ** ((now - t) / self.halflife_s)
        fp, ok = fp * decay, ok * decay
        if verdict == "false_positive":
            fp += 1.0
        else:
            ok += 1.0
        self.counts[anomaly_class] = (fp, ok, now)

    def factor(self, anomaly_class: str) -> float:
        c = self.counts.get(anomaly_class)
        if c is None:
            return 1.0
        fp, ok, _ = c
        p = (fp + self.prior / 2.0) / (fp + ok + self.prior)
        return 1.0 + 2.0 * self.weight * (p - 0.5)

    @classmethod
    def merged(cls, parts: Iterable[ClassSensitivity]) -> ClassSensitivity:
        """One view of several writers' counts, each decayed to the newest of them."""
        parts = list(parts)
        out = cls() if not parts else cls(weight=parts[0].weight, prior=parts[0].prior,
                                          halflife_s=parts[0].halflife_s)
        for anomaly_class in {c for p in parts for c in p.counts}:
            entries = [p.counts[anomaly_class] for p in parts if anomaly_class in p.counts]
            now = max(t for _, _, t in entries)
            fp = sum(f * 0.5 ** ((now - t) / out.halflife_s) for f, _, t in entries)
            ok = sum(o * 0.5 ** ((now - t) / out.halflife_s) for _, o, t in entries)
            out.counts[anomaly_class] = (fp, ok, now)
        return out

    def __repr__(self) -> str:
        shown = {c: round(self.factor(c), 3) for c in sorted(self.counts)}
        return f"ClassSensitivity({shown})"


def vm_of_incident(incident_id: str, classes: Iterable[str]) -> str | None:
    """The vm_id of an incident id ``<vm_id>/<class>/<start epoch s>``, or None if it is not
    one.

    >>> vm_of_incident("vm-0042/cpu_spike/1761998400", ["cpu_spike"])
    'vm-0042'
    >>> vm_of_incident("inc-1", ["cpu_spike"]) is None
    True
    """
    parts = incident_id.rsplit("/", 2)
    if len(parts) != 3 or not parts[0] or parts[1] not in set(classes):
        return None
    try:
        start = int(parts[2])
    except ValueError:
        return None
    if start < 0 or str(start) != parts[2]:
        return None
    return parts[0]
