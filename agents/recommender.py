"""A simple, stable scaling rule on the sliding-window features.

Scale up when the sliding mean cpu or the memory use crosses its threshold; scale down when
the sliding max cpu and the memory use are low; hold a cooldown after each recommendation so
the scheduler is not asked to flap, and do not repeat the same action for ``repeat_after_s``.
(Forecast-driven targets and migration come later.)

>>> from schemas.records import MetricEvent
>>> rule = ScalingRule(cooldown_s=600)
>>> ev = MetricEvent("vm-1", "h-1", 1000.0, 95.0, 1e9, 4e9, 2, 0, 0, 0, 0)
>>> rec = rule.recommend(ev, {"cpu_pct.sliding.mean": 92.0, "cpu_pct.sliding.max": 97.0})
>>> rec.action, rec.target_vcpus
('scale_up', 4)
>>> rule.recommend(ev, {"cpu_pct.sliding.mean": 92.0, "cpu_pct.sliding.max": 97.0}) is None
True
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

from schemas.records import Action, MetricEvent, Recommendation

TARGET_CPU_PCT = 60.0
TARGET_MEMORY_PCT = 70.0
_MIN_MEMORY_BYTES = 64 * 2**20
_MEMORY_STEP_BYTES = 64 * 2**20


def _round_up(n_bytes: float) -> float:
    """Memory targets in whole 64 MiB steps."""
    return float(math.ceil(n_bytes / _MEMORY_STEP_BYTES) * _MEMORY_STEP_BYTES)


def recommendation_id(vm_id: str, action: str, timestamp: float) -> str:
    """Deterministic id: the same decision on the same event gets the same id after a replay."""
    digest = hashlib.sha1(f"{vm_id}|{action}|{timestamp:.3f}".encode()).hexdigest()
    return f"rec-{digest[:16]}"


class ScalingRule:
    """Threshold rule with a cooldown; keeps the last decision per VM as its state."""

    def __init__(self, *, scale_up_cpu_pct: float = 80.0, scale_down_cpu_pct: float = 10.0,
                 scale_up_memory_pct: float = 90.0, cooldown_s: float = 3600.0,
                 valid_for_s: float = 900.0, repeat_after_s: float = 21600.0) -> None:
        self.scale_up_cpu_pct = scale_up_cpu_pct
        self.scale_down_cpu_pct = scale_down_cpu_pct
        self.scale_up_memory_pct = scale_up_memory_pct
        self.cooldown_s = cooldown_s
        self.valid_for_s = valid_for_s
        self.repeat_after_s = repeat_after_s
        self.last_action: str = "none"
        self.last_at = -math.inf

    def recommend(self, event: MetricEvent,
                  features: Mapping[str, float]) -> Recommendation | None:
        """A recommendation for this event, or None (nothing to change, or cooling down)."""
        if event.timestamp - self.last_at < self.cooldown_s:
            return None
        cpu_mean = features.get("cpu_pct.sliding.mean", event.cpu_pct)
        cpu_max = features.get("cpu_pct.sliding.max", event.cpu_pct)
        mem_pct = 100.0 * event.memory_used_bytes / event.memory_total_bytes
        cores_used = event.vcpus * cpu_mean / 100.0
        action: Action = "none"
        reasons: list[str] = []
        if cpu_mean > self.scale_up_cpu_pct:
            action = "scale_up"
            reasons.append(f"sliding mean cpu {cpu_mean:.1f}% > {self.scale_up_cpu_pct:g}%")
        if mem_pct > self.scale_up_memory_pct:
            action = "scale_up"
            reasons.append(f"memory use {mem_pct:.1f}% > {self.scale_up_memory_pct:g}%")
        target_vcpus = max(1, math.ceil(cores_used * 100.0 / TARGET_CPU_PCT))
        target_mem = _round_up(max(_MIN_MEMORY_BYTES,
                                   event.memory_used_bytes * 100.0 / TARGET_MEMORY_PCT))
        if action == "none" and cpu_max < self.scale_down_cpu_pct and mem_pct < 50.0 and (
                target_vcpus < event.vcpus or target_mem < 0.5 * event.memory_total_bytes):
            action = "scale_down"
            reasons.append(f"sliding max cpu {cpu_max:.1f}% < {self.scale_down_cpu_pct:g}% "
                           f"and memory use {mem_pct:.1f}% < 50%")
        if action == "none":
            return None
        if action == "scale_up":
            target_vcpus = max(target_vcpus, event.vcpus + 1)
            target_mem = max(target_mem, event.memory_total_bytes)
        else:
            target_vcpus = min(target_vcpus, event.vcpus)
            target_mem = min(target_mem, event.memory_total_bytes)
        if action == self.last_action and event.timestamp - self.last_at < self.repeat_after_s:
            return None  # the same advice again: the scheduler has it already
        self.last_action, self.last_at = action, event.timestamp
        confidence = 0.9 if len(reasons) > 1 else 0.7
        return Recommendation(
            recommendation_id=recommendation_id(event.vm_id, action, event.timestamp),
            vm_id=event.vm_id, host_id=event.host_id, timestamp=event.timestamp, action=action,
            confidence=confidence, reasons=reasons, current_vcpus=event.vcpus,
            target_vcpus=target_vcpus, current_memory_bytes=event.memory_total_bytes,
            target_memory_bytes=target_mem,
            valid_until=event.timestamp + self.valid_for_s)
