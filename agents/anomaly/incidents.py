"""Incidents, not alert storms: one incident per episode, opened, updated and resolved.

An incident opens on the first anomalous sample of a VM, is updated only when its severity
changes, and resolves after ``resolve_after`` normal samples in a row. Its id is deterministic
(VM, class, start), so reprocessing the same events after a restart yields the same id.

>>> t = IncidentTracker(resolve_after=2)
>>> t.observe("vm-1", 100.0, True, "cpu_spike", "high").status
'open'
>>> t.observe("vm-1", 400.0, True, "cpu_spike", "high") is None
True
>>> [t.observe("vm-1", ts, False, "", "") for ts in (700.0, 1000.0)][-1].status
'resolved'
"""

from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("low", "medium", "high", "critical")


def incident_id(vm_id: str, anomaly_class: str, started_at: float) -> str:
    """``<vm_id>/<class>/<start epoch s>``: the same episode always gets the same id."""
    return f"{vm_id}/{anomaly_class}/{int(started_at)}"


def severity(margin: float, breadth: int, duration_steps: int) -> str:
    """low..critical from how far over the threshold (0..1), how many metrics, how long."""
    level = int(margin > 0.25) + int(margin > 0.5) + int(breadth >= 3) + int(
        duration_steps >= 12)
    return SEVERITIES[min(level, 3)]


@dataclass
class Incident:
    incident_id: str
    anomaly_class: str
    started_at: float
    severity: str
    steps: int = 1
    normal_streak: int = 0
    peak_score: float = 0.0


@dataclass(frozen=True)
class Transition:
    """What to publish: an incident opened, changed severity, or resolved."""

    status: str
    incident: Incident


class IncidentTracker:
    """The open incident of one VM (at most one at a time)."""

    def __init__(self, resolve_after: int = 3) -> None:
        self.resolve_after = resolve_after
        self.open: Incident | None = None

    def observe(self, vm_id: str, timestamp: float, anomalous: bool, anomaly_class: str,
                level: str, score: float = 0.0) -> Transition | None:
        inc = self.open
        if anomalous:
            if inc is None:
                inc = self.open = Incident(incident_id(vm_id, anomaly_class, timestamp),
                                           anomaly_class, timestamp, level, peak_score=score)
                return Transition("open", inc)
            inc.steps += 1
            inc.normal_streak = 0
            inc.peak_score = max(inc.peak_score, score)
            if SEVERITIES.index(level) > SEVERITIES.index(inc.severity):
                inc.severity = level
                return Transition("update", inc)
            return None
        if inc is None:
            return None
        inc.normal_streak += 1
        if inc.normal_streak >= self.resolve_after:
            self.open = None
            return Transition("resolved", inc)
        return None
