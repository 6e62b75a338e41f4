"""Per-VM scaling recommendations: pattern, right-sized targets, and migration when the host is
full.

:class:`VMRecommender` is part of a VM's state. On each sample it updates the VM's workload
pattern, then the cpu and memory :class:`~agents.scaling.rightsizing.RightSizer` from the VM's
own forecasters (cpu in cores: ``cpu_pct x vcpus / 100``). When either moves, it publishes one
:class:`~schemas.records.Recommendation`:

* ``scale_up`` when the target gives the VM more of a resource than it reports having now
  (the other may shrink in the same record), ``scale_down`` when only less: the sizers move
  from their own last target, which the scheduler may not have applied, so the action is
  judged against the VM's reported vCPUs and memory;
* ``migrate`` instead of ``scale_up`` when the grown VM no longer fits on its host and another
  host has room for it (:func:`~agents.scaling.placement.choose_target`); when no host has
  room, a ``scale_up`` capped at what the current host can give, saying so;
* its id is a digest of (vm, action, timestamp), so a replay gives the same ids; it is valid
  for ``valid_for_s``;
* its confidence is how narrow the 90 % interval of the triggering resource's forecast is
  relative to the forecast (1 - width / (2 x point), kept within 0.3-0.95);
* its reasons: the pattern, each change and why, the forecast peak, the host's headroom.

>>> from agents.forecasting.vm import VMForecaster
>>> from schemas.records import MetricEvent
>>> fc, rec = VMForecaster(), VMRecommender(SizingConfig(stabilization_s=0, cooldown_s=0))
>>> out = []
>>> for i in range(40):
...     ev = MetricEvent("vm-1", "h-1", 300.0 * i, 10.0, 1e9, 16e9, 8, 0, 0, 0, 0)
...     _ = fc.learn_one(ev)
...     out.append(rec.recommend(ev, fc, hosts=None))
>>> first = next(r for r in out if r is not None)
>>> first.action, first.target_vcpus, first.target_memory_bytes / 2**30
('scale_down', 1, 1.125)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

from agents.forecasting.series import SeriesView
from agents.forecasting.vm import VMForecaster
from agents.scaling.patterns import PatternDetector
from agents.scaling.placement import HostState, choose_target
from agents.scaling.rightsizing import Change, RightSizer
from agents.scaling.sizing import (
    SizingConfig,
    cpu_forecast,
    cpu_sizer,
    memory_forecast,
    memory_sizer,
    recent_cells,
)
from schemas.records import Action, MetricEvent, Recommendation

MIN_CORES = 0.025
MEMORY_STEP_BYTES = 64 * 2**20
GIB = float(2**30)


def recommendation_id(vm_id: str, action: str, timestamp: float) -> str:
    """Deterministic id: the same decision on the same event gets the same id after a replay."""
    digest = hashlib.sha1(f"{vm_id}|{action}|{timestamp:.3f}".encode()).hexdigest()
    return f"rec-{digest[:16]}"


def round_memory(n_bytes: float) -> float:
    """Memory targets in whole 64 MiB steps, at least one."""
    return float(max(1, math.ceil(n_bytes / MEMORY_STEP_BYTES)) * MEMORY_STEP_BYTES)


@dataclass(frozen=True)
class _Sized:
    cores: float
    vcpus: int
    memory_bytes: float


class VMRecommender:
    """One VM's pattern, right-sizers and last recommendation; see the module docstring."""

    def __init__(self, cfg: SizingConfig | None = None, valid_for_s: float = 900.0) -> None:
        self.cfg = cfg or SizingConfig()
        self.valid_for_s = valid_for_s
        self.patterns = PatternDetector()
        self.cpu: RightSizer | None = None
        self.memory: RightSizer | None = None
        self.last: Recommendation | None = None

    def recommend(self, ev: MetricEvent, forecasters: VMForecaster,
                  hosts: Mapping[str, HostState] | None) -> Recommendation | None:
        """Learn ``ev`` (already learnt by ``forecasters``); a recommendation, or None."""
        self.patterns.learn_one(ev.timestamp, ev.cpu_pct, ev.memory_used_bytes)
        cpu_fc = forecasters.series.get("cpu_pct")
        mem_fc = forecasters.series.get("memory_used_bytes")
        if cpu_fc is None or mem_fc is None:
            return None
        if self.cpu is None or self.memory is None:
            self.cpu = cpu_sizer(float(ev.vcpus), self.cfg, floor=MIN_CORES)
            self.memory = memory_sizer(ev.memory_total_bytes, self.cfg, floor=MEMORY_STEP_BYTES)
        per_core = ev.vcpus / 100.0  # cpu_pct -> cores
        cpu_out = cpu_fc.forecast_at(ev.timestamp, cpu_fc.horizons_s[-1:])  # all it reads
        mem_out = mem_fc.forecast_at(ev.timestamp)
        cpu_change = self.cpu.update(
            ev.timestamp, forecast=cpu_forecast(cpu_out) * per_core,
            recent=[v * per_core for v in recent_cells(cpu_fc, self.cfg.cpu_window_s)])
        mem_change = self.memory.update(
            ev.timestamp, forecast=memory_forecast(mem_out),
            recent=recent_cells(mem_fc, self.cfg.memory_window_s))
        if cpu_change is None and mem_change is None:
            return None
        sized = _Sized(self.cpu.allocation, max(1, math.ceil(self.cpu.allocation - 1e-9)),
                       round_memory(self.memory.allocation))
        up = _grows(sized, ev, cpu_change, mem_change)
        action: Action = "scale_up" if up else "scale_down"
        reasons = [self.patterns.describe()]
        for name, change in (("cpu", cpu_change), ("memory", mem_change)):
            if change is not None:
                unit = " cores" if name == "cpu" else ""
                reasons.append(f"{name}: {change.reason}{unit}")
        reasons.append(_forecast_reason("cpu", cpu_fc, cpu_out, per_core, "cores"))
        reasons.append(_forecast_reason("memory", mem_fc, mem_out, 1.0 / GIB, "GiB"))
        target_host = None
        if up and hosts is not None:
            action, sized, target_host = self._place(ev, sized, hosts, reasons)
        trigger_out = cpu_out if cpu_change is not None else mem_out
        rec = Recommendation(
            recommendation_id=recommendation_id(ev.vm_id, action, ev.timestamp),
            vm_id=ev.vm_id, host_id=ev.host_id, timestamp=ev.timestamp, action=action,
            confidence=_confidence(trigger_out), reasons=reasons, current_vcpus=ev.vcpus,
            target_vcpus=sized.vcpus, current_memory_bytes=ev.memory_total_bytes,
            target_memory_bytes=sized.memory_bytes, valid_until=ev.timestamp + self.valid_for_s,
            target_host=target_host, pattern=self.patterns.pattern,
            target_cpu_cores=round(sized.cores, 3))
        self.last = rec
        return rec

    def _place(self, ev: MetricEvent, sized: _Sized, hosts: Mapping[str, HostState],
               reasons: list[str]) -> tuple[Action, _Sized, str | None]:
        """Keep the scale-up on the VM's host if it fits there, else migrate or cap it."""
        home = hosts.get(ev.host_id)
        if home is None:  # the host has not been heard of yet: nothing to check against
            return "scale_up", sized, None
        free_cores = home.cpu_cores - home.allocated_cores
        free_bytes = home.memory_bytes - home.allocated_bytes
        reasons.append(f"host {home.host_id} headroom: {free_cores:.3g} cores, "
                       f"{free_bytes / GIB:.3g} GiB")
        if home.fits(ev.vm_id, sized.vcpus, sized.memory_bytes):
            return "scale_up", sized, None
        reasons.append(f"{home.host_id} has no room for {sized.vcpus} vCPUs and "
                       f"{sized.memory_bytes / GIB:.3g} GiB")
        target = choose_target(hosts, ev.vm_id, sized.vcpus, sized.memory_bytes,
                               group=ev.anti_affinity_group, exclude=home.host_id)
        if target is not None:
            reasons.append(target.reason())
            return "migrate", sized, target.host_id
        own = home.vms.get(ev.vm_id)
        cores = min(sized.vcpus, free_cores + (own.vcpus if own else ev.vcpus))
        mem = min(sized.memory_bytes, free_bytes + (own.memory_bytes if own else
                                                    ev.memory_total_bytes))
        capped = _Sized(min(sized.cores, cores), max(1, math.floor(cores)),
                        float(max(1, math.floor(mem / MEMORY_STEP_BYTES)) * MEMORY_STEP_BYTES))
        reasons.append("no host has room for the forecast peak: capped at what "
                       f"{home.host_id} can give")
        return "scale_up", capped, None


def _grows(sized: _Sized, ev: MetricEvent, cpu_change: Change | None,
           mem_change: Change | None) -> bool:
    """Whether the target is a scale-up of what the VM has now (its reported vCPUs and
    memory): a grown resource makes it one, else a shrunk one makes it a scale-down. Only when
    both equal the VM's (the fractional core target moved) does the sizers' direction decide.
    The sizers move from their own last target, which the VM may not have been given."""
    if sized.vcpus > ev.vcpus or sized.memory_bytes > ev.memory_total_bytes:
        return True
    if sized.vcpus < ev.vcpus or sized.memory_bytes < ev.memory_total_bytes:
        return False
    return any(c is not None and c.direction == "up" for c in (cpu_change, mem_change))


def _forecast_reason(name: str, fc: SeriesView,
                     out: list[tuple[float, tuple[float, float, float, float]]], scale: float,
                     unit: str) -> str:
    point, band = out[-1]
    return (f"{name} forecast in {fc.horizons_s[-1]:g} s: {point * scale:.3g} {unit} "
            f"(90 % up to {band[3] * scale:.3g})")


def _confidence(out: list[tuple[float, tuple[float, float, float, float]]]) -> float:
    point, (_, _, lo90, hi90) = out[-1]
    if point <= 0:
        return 0.3
    return round(min(0.95, max(0.3, 1.0 - (hi90 - lo90) / (2.0 * point))), 3)


__all__ = ["Change", "VMRecommender", "recommendation_id", "round_memory"]
