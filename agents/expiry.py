"""Forgetting idle VMs, so a worker's state does not grow with every VM it ever saw.

:class:`IdleTracker` remembers when (wall clock) each VM last sent an event to this worker.
A VM the worker holds state for but has not heard from since it took the partition over
counts from the moment it is first noticed, so a worker that just restored a partition
never deletes its VMs straight away.

>>> idle = IdleTracker(expiry_s=3600.0)
>>> idle.touch(b"vm-1", now=0.0)
>>> idle.expired([b"vm-1", b"vm-2"], now=1800.0)    # vm-2 noticed now, vm-1 still fresh
[]
>>> idle.expired([b"vm-1", b"vm-2"], now=4000.0)
[b'vm-1']
>>> idle.forget(b"vm-1"); len(idle)
1
"""

from __future__ import annotations

from collections.abc import Iterable


class IdleTracker:
    """When each VM was last heard from; which held VMs have been idle too long."""

    def __init__(self, expiry_s: float) -> None:
        if expiry_s <= 0:
            raise ValueError("expiry_s must be positive (use no tracker to never expire)")
        self.expiry_s = expiry_s
        self._last: dict[bytes, float] = {}

    def __len__(self) -> int:
        return len(self._last)

    def touch(self, key: bytes, now: float) -> None:
        self._last[key] = now

    def forget(self, key: bytes) -> None:
        self._last.pop(key, None)

    def expired(self, held: Iterable[bytes], now: float) -> list[bytes]:
        """The VMs of ``held`` idle for longer than ``expiry_s``; VMs of ``held`` not seen
        before start counting now, and VMs no longer held are forgotten."""
        held = set(held)
        for key in [k for k in self._last if k not in held]:
            del self._last[key]
        out = []
        for key in held:
            last = self._last.setdefault(key, now)
            if now - last > self.expiry_s:
                out.append(key)
        return sorted(out)
