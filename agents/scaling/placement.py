"""Hosts and where a VM that outgrows its host should go.

A :class:`HostState` is one host's capacity and the VMs reported on it (their allocation,
their use, their anti-affinity group), built from the VMs' own metrics: each VM's state
reports to its host every so often (:class:`~schemas.records.HostReport`), and reports that
are not renewed expire. Host states are plain JSON, never pickles, so they can be read from a
topic safely.

:func:`choose_target` ranks the hosts that can take a VM's forecast peak without
overcommitting (allocated + the VM's target <= capacity, for cpu and memory) and that hold no
other VM of its anti-affinity group, by a weighted score in [0, 1]:

* **headroom** (weight 0.5): the smaller of the cpu and memory shares left free after the
  move, so the VM lands where it has room to grow;
* **balance** (weight 0.3): one minus how far the host's utilisation after the move would be
  above the fleet's mean utilisation, so moves even load out instead of piling it up;
* **consolidation** (weight 0.2): 1 for a host that already runs VMs, 0 for an empty one, so
  idle hosts stay empty and can be powered down.

>>> hosts = {
...     "h1": HostState("h1", 8, 32 * GIB, {"a": VMOnHost(6, 24 * GIB, 5.0, 20 * GIB, None, 0)}),
...     "h2": HostState("h2", 8, 32 * GIB, {"b": VMOnHost(2, 8 * GIB, 1.0, 4 * GIB, "db", 0)}),
...     "h3": HostState("h3", 8, 32 * GIB, {}),
... }
>>> choose_target(hosts, "a", 2.0, 4 * GIB, group=None, exclude="h1").host_id  # consolidate
'h2'
>>> choose_target(hosts, "c", 2.0, 8 * GIB, group="db", exclude="h1").host_id  # anti-affinity
'h3'
>>> choose_target(hosts, "a", 9.0, 8 * GIB, group=None, exclude="h1") is None  # nothing fits
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from schemas.records import HostReport

GIB = float(2**30)
#: Weights of the placement score (see the module docstring).
WEIGHTS = {"headroom": 0.5, "balance": 0.3, "consolidation": 0.2}


@dataclass
class VMOnHost:
    """What a host knows of one of its VMs (from the VM's last report)."""

    vcpus: float
    memory_bytes: float
    cpu_cores_used: float
    memory_used_bytes: float
    anti_affinity_group: str | None
    reported_at: float


@dataclass
class HostState:
    """One host: its capacity and the VMs reported on it."""

    host_id: str
    cpu_cores: float
    memory_bytes: float
    vms: dict[str, VMOnHost] = field(default_factory=dict)

    @property
    def allocated_cores(self) -> float:
        return sum(v.vcpus for v in self.vms.values())

    @property
    def allocated_bytes(self) -> float:
        return sum(v.memory_bytes for v in self.vms.values())

    def fits(self, vm_id: str, cores: float, n_bytes: float) -> bool:
        """Whether the VM, at this size, fits without overcommitting (its current share on
        this host, if any, is given back first)."""
        own = self.vms.get(vm_id)
        cores_now = self.allocated_cores - (own.vcpus if own else 0.0)
        bytes_now = self.allocated_bytes - (own.memory_bytes if own else 0.0)
        return cores_now + cores <= self.cpu_cores and bytes_now + n_bytes <= self.memory_bytes

    def utilisation(self, extra_cores: float = 0.0, extra_bytes: float = 0.0) -> float:
        """The larger of the cpu and memory shares allocated (with an extra VM)."""
        return max((self.allocated_cores + extra_cores) / self.cpu_cores,
                   (self.allocated_bytes + extra_bytes) / self.memory_bytes)

    def expire(self, now: float, ttl_s: float) -> list[str]:
        """Forget VMs not reported for ``ttl_s``; returns their ids."""
        gone = [vm for vm, v in self.vms.items() if now - v.reported_at > ttl_s]
        for vm in gone:
            del self.vms[vm]
        return gone

    def summary(self) -> dict[str, Any]:
        """The JSON view of ``GET /hosts/{host_id}``."""
        return {
            "host_id": self.host_id,
            "capacity": {"cpu_cores": self.cpu_cores, "memory_bytes": self.memory_bytes},
            "allocated": {"cpu_cores": self.allocated_cores,
                          "memory_bytes": self.allocated_bytes},
            "used": {"cpu_cores": sum(v.cpu_cores_used for v in self.vms.values()),
                     "memory_bytes": sum(v.memory_used_bytes for v in self.vms.values())},
            "headroom": {"cpu_cores": self.cpu_cores - self.allocated_cores,
                         "memory_bytes": self.memory_bytes - self.allocated_bytes},
            "vms": {vm: asdict(v) for vm, v in sorted(self.vms.items())},
        }

    def to_json(self) -> bytes:
        return orjson.dumps({"host_id": self.host_id, "cpu_cores": self.cpu_cores,
                             "memory_bytes": self.memory_bytes,
                             "vms": {vm: asdict(v) for vm, v in self.vms.items()}})

    @classmethod
    def from_json(cls, raw: bytes) -> HostState:
        d = orjson.loads(raw)
        return cls(str(d["host_id"]), float(d["cpu_cores"]), float(d["memory_bytes"]),
                   {str(vm): VMOnHost(**v) for vm, v in d["vms"].items()})


def apply_report(host: HostState | None, report: HostReport, *, cpu_cores: float,
                 memory_bytes: float, ttl_s: float) -> HostState:
    """The host after one of its VMs' reports (a new host gets the given capacity); VMs not
    reported for ``ttl_s`` before this report are forgotten."""
    if host is None:
        host = HostState(report.host_id, cpu_cores, memory_bytes)
    if report.gone:
        host.vms.pop(report.vm_id, None)
    else:
        known = host.vms.get(report.vm_id)
        if known is None or known.reported_at <= report.timestamp:  # never go back in time
            host.vms[report.vm_id] = VMOnHost(
                report.vcpus, report.memory_bytes, report.cpu_cores_used,
                report.memory_used_bytes, report.anti_affinity_group, report.timestamp)
    host.expire(report.timestamp, ttl_s)
    return host


@dataclass(frozen=True)
class Placement:
    """A chosen target host and why."""

    host_id: str
    score: float
    parts: dict[str, float]

    def reason(self) -> str:
        detail = ", ".join(f"{k} {v:.2f}" for k, v in self.parts.items())
        return f"target {self.host_id} scores {self.score:.2f} ({detail})"


def choose_target(hosts: Mapping[str, HostState], vm_id: str, cores: float, n_bytes: float,
                  *, group: str | None, exclude: str) -> Placement | None:
    """The best host for ``vm_id`` at (``cores``, ``n_bytes``), or None when none fits."""
    others = [h for h in hosts.values() if h.host_id != exclude]
    if not others:
        return None
    mean_util = sum(h.utilisation() for h in hosts.values()) / len(hosts)
    best: Placement | None = None
    for h in sorted(others, key=lambda h: h.host_id):
        if not h.fits(vm_id, cores, n_bytes):
            continue
        if group is not None and any(v.anti_affinity_group == group
                                     for vm, v in h.vms.items() if vm != vm_id):
            continue
        headroom = min(1.0 - (h.allocated_cores + cores) / h.cpu_cores,
                       1.0 - (h.allocated_bytes + n_bytes) / h.memory_bytes)
        balance = 1.0 - max(0.0, h.utilisation(cores, n_bytes) - mean_util)
        consolidation = 1.0 if h.vms else 0.0
        parts = {"headroom": round(headroom, 4), "balance": round(balance, 4),
                 "consolidation": consolidation}
        score = sum(WEIGHTS[k] * v for k, v in parts.items())
        if best is None or score > best.score:
            best = Placement(h.host_id, round(score, 4), parts)
    return best
