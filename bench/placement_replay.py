"""Replay our scaling decisions over hosts, with migration, and count overcommitted targets.

The Bitbrains traces name no hosts, so VMs are placed as the replay tool places them (four per
host, ``streams.traces.vm_identity``), and each host's capacity is a share (default 0.5) of
what its VMs were provisioned at their first sample: a consolidated cluster, so that growing
VMs do run out of room. Every allocation change of the ``ours`` policy is applied in time
order across the fleet: a change that fits on the VM's host stays there; a scale-up that does
not is a migration to the host :func:`agents.scaling.placement.choose_target` picks, or, when
no host has room, is capped (left as it was). Each migration target is then checked
independently (the target host's allocations summed again after the move): a target above
its capacity counts as overcommitted. It must be 0.

>>> changes = [(0.0, 1, 1.0, 1.0), (0.0, 2, 1.0, 1.0), (10.0, 1, 3.0, 3.0)]
>>> r = replay(changes, {1: (2.0, 2.0), 2: (2.0, 2.0)}, capacity_share=1.0, vms_per_host=1)
>>> r.migrations, r.capped, r.overcommitted_targets
(0, 1, 0)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agents.scaling.placement import HostState, VMOnHost, choose_target


@dataclass
class ReplayResult:
    changes: int = 0
    migrations: int = 0
    capped: int = 0
    overcommitted_targets: int = 0


def host_of(vm: int, vms_per_host: int) -> str:
    return f"host-{(vm - 1) // vms_per_host + 1:02d}"


def replay(changes: Iterable[tuple[float, int, float, float]],
           provisioned: Mapping[int, tuple[float, float]], *, capacity_share: float = 0.5,
           vms_per_host: int = 4) -> ReplayResult:
    """``changes``: (time, vm, cores, bytes) of every allocation the policy set (its first one
    included); ``provisioned``: each VM's (cores, bytes) at its first sample."""
    hosts: dict[str, HostState] = {}
    for vm, (cores, n_bytes) in provisioned.items():
        h = hosts.setdefault(host_of(vm, vms_per_host), HostState(host_of(vm, vms_per_host),
                                                                   0.0, 0.0))
        h.cpu_cores += capacity_share * cores
        h.memory_bytes += capacity_share * n_bytes
    where: dict[int, str] = {}
    result = ReplayResult()
    for t, vm, cores, n_bytes in sorted(changes):
        result.changes += 1
        home = hosts[where.setdefault(vm, host_of(vm, vms_per_host))]
        key = f"vm-{vm:03d}"
        entry = VMOnHost(cores, n_bytes, 0.0, 0.0, None, t)
        own = home.vms.get(key)
        grows = own is None or cores > own.vcpus or n_bytes > own.memory_bytes
        if own is None or not grows or home.fits(key, cores, n_bytes):
            home.vms[key] = entry
            continue
        target = choose_target(hosts, key, cores, n_bytes, group=None, exclude=home.host_id)
        if target is None:
            result.capped += 1
            continue
        result.migrations += 1
        del home.vms[key]
        dest = hosts[target.host_id]
        dest.vms[key] = entry
        where[vm] = dest.host_id
        if sum(v.vcpus for v in dest.vms.values()) > dest.cpu_cores + 1e-9 or \
                sum(v.memory_bytes for v in dest.vms.values()) > dest.memory_bytes + 1e-6:
            result.overcommitted_targets += 1
    return result
