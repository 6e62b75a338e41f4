"""Many VMs' detectors as the rows of one :class:`~agents.anomaly.vm.FleetDetector`.

A worker holds thousands of VMs, each with a :class:`~agents.anomaly.vm.VMDetector`. Stepped
one sample at a time, each call pays the same Python glue around kernels that take
microseconds. A :class:`DetectorPool` gives every cached VM a *slot*, a row of one fleet
detector's arrays: :meth:`VMDetector.attach` moves a VM's rows in, and a batch of samples
from distinct VMs is scored and learned in one :meth:`~agents.anomaly.vm.FleetDetector.score_many`
and one ``learn_many``. A VM's stored state is still its own one-row detector (the rows are
copied out when it is stored), so the stored format does not depend on the pool.

The arrays that hold per-VM rows are found by comparing a one-row and a two-row detector: an
array whose first axis grows with the rows holds ``k`` rows per VM (``k`` is the number of
metrics for the per-metric members, 1 for the rest). Everything else (the trees' shared
structure, index helpers) is the same in every detector with the same parameters.

>>> import numpy as np
>>> pool = DetectorPool(("cpu_pct",), capacity=1)
>>> a, b = pool.acquire(), pool.acquire()  # the pool grows as it needs
>>> (a, b, pool.capacity)
(0, 1, 2)
>>> pool.release(a)
>>> pool.acquire()
0
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from agents.anomaly.vm import FleetDetector, FleetScores, VMDetector

#: (path of the owner from the detector, attribute, rows per VM)
Layout = tuple[tuple[tuple[str, ...], str, int], ...]

_LAYOUTS: dict[tuple[tuple[str, ...], tuple[tuple[str, Any], ...]], Layout] = {}


def _arrays(obj: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str,
                                                                    np.ndarray]]:
    for name, value in vars(obj).items():
        if isinstance(value, np.ndarray):
            yield path, name, value
        elif type(value).__module__.startswith("agents.anomaly."):
            yield from _arrays(value, (*path, name))


def layout(metrics: tuple[str, ...], **params: Any) -> Layout:
    """The per-VM row arrays of a :class:`FleetDetector` with ``metrics`` and ``params``."""
    key = (metrics, tuple(sorted(params.items())))
    if key not in _LAYOUTS:
        one = {(p, n): a.shape for p, n, a in _arrays(FleetDetector(metrics, 1, **params))}
        two = {(p, n): a.shape for p, n, a in _arrays(FleetDetector(metrics, 2, **params))}
        _LAYOUTS[key] = tuple((p, n, shape[0]) for (p, n), shape in one.items()
                              if two[(p, n)] != shape)
    return _LAYOUTS[key]


def _owner(det: FleetDetector, path: tuple[str, ...]) -> Any:
    obj: Any = det
    for name in path:
        obj = getattr(obj, name)
    return obj


def copy_rows(src: FleetDetector, src_row: int, dst: FleetDetector, dst_row: int,
              rows: Layout) -> None:
    """Copy one VM's rows from ``src`` (VM row ``src_row``) into ``dst`` (``dst_row``)."""
    for path, name, k in rows:
        out = getattr(_owner(dst, path), name)
        out[dst_row * k:(dst_row + 1) * k] = getattr(_owner(src, path), name)[
            src_row * k:(src_row + 1) * k]


def pack_rows(src: FleetDetector, row: int, rows: Layout) -> list[np.ndarray]:
    """One VM's rows of ``src`` (VM row ``row``) as a few flat arrays, one per dtype in the
    order of first appearance in ``rows``: what a stored state holds, without the detector
    object around them."""
    parts: dict[str, list[np.ndarray]] = {}
    for path, name, k in rows:
        a = getattr(_owner(src, path), name)[row * k:(row + 1) * k]
        parts.setdefault(a.dtype.str, []).append(a.ravel())
    return [np.concatenate(p) for p in parts.values()]


def unpack_rows(dst: FleetDetector, row: int, rows: Layout, packed: list[np.ndarray]) -> None:
    """Put :func:`pack_rows`' arrays back as VM row ``row`` of ``dst`` (same layout)."""
    at: dict[str, int] = {}
    order: dict[str, np.ndarray] = {}
    for path, name, k in rows:
        out = getattr(_owner(dst, path), name)[row * k:(row + 1) * k]
        key = out.dtype.str
        if key not in order:
            if len(order) == len(packed):
                raise ValueError("stored detector rows do not match this detector's layout")
            order[key] = packed[len(order)]
        start = at.get(key, 0)
        at[key] = start + out.size
        out[...] = order[key][start:start + out.size].reshape(out.shape)
    if any(len(order[key]) != n for key, n in at.items()):
        raise ValueError("stored detector rows do not match this detector's layout")


class DetectorPool:
    """Slots for VMs' detectors in one :class:`FleetDetector`, grown by doubling."""

    def __init__(self, metrics: tuple[str, ...], capacity: int = 256, **params: Any) -> None:
        self.metrics = tuple(metrics)
        self.params = params
        self.rows = layout(self.metrics, **params)
        self.fleet = FleetDetector(self.metrics, max(1, capacity), **params)
        self.capacity = max(1, capacity)
        self._free = list(range(self.capacity - 1, -1, -1))

    def __len__(self) -> int:
        """Slots in use."""
        return self.capacity - len(self._free)

    def acquire(self) -> int:
        """A free slot (its rows are overwritten by whoever takes it)."""
        if not self._free:
            self._grow()
        return self._free.pop()

    def release(self, slot: int) -> None:
        self._free.append(slot)

    def step(self, slots: npt.ArrayLike, t: npt.ArrayLike, x: npt.ArrayLike) -> FleetScores:
        """Score, then learn, one sample of each of ``slots`` (distinct) at times ``t``
        (``x``: shape ``(len(slots), metrics)``); the scores, as before learning."""
        scores = self.fleet.score_many(slots, t, x)
        self.fleet.learn_many(slots, t, x, scores)
        return scores

    def copy_in(self, one: FleetDetector, slot: int) -> None:
        """Put the rows of a one-row detector in ``slot``."""
        copy_rows(one, 0, self.fleet, slot, self.rows)

    def copy_out(self, slot: int) -> FleetDetector:
        """A one-row detector with the rows of ``slot``."""
        one = FleetDetector(self.metrics, 1, **self.params)
        copy_rows(self.fleet, slot, one, 0, self.rows)
        return one

    def _grow(self) -> None:
        old, cap = self.fleet, self.capacity
        new = FleetDetector(self.metrics, 2 * cap, **self.params)
        for path, name, k in self.rows:
            getattr(_owner(new, path), name)[:cap * k] = getattr(_owner(old, path), name)
        self.fleet, self.capacity = new, 2 * cap
        self._free = list(range(2 * cap - 1, cap - 1, -1))


def warm_up() -> float:
    """Compile every detector kernel now, or load it from numba's on-disk cache: the seconds
    it took. A worker calls this before it consumes, so the first batch does not stall the
    event loop for the compilation (about 20 s on two cores, once per source change).

    >>> warm_up() >= 0.0
    True
    """
    start = time.perf_counter()
    det = VMDetector()  # one VM on its own, as the backtest steps it
    sample = dict.fromkeys(det.metrics, 1.0)
    pool = DetectorPool(det.metrics, capacity=2)  # many VMs at once, as a worker does
    slots = np.array([pool.acquire(), pool.acquire()], dtype=np.int64)
    for step in range(3):
        verdict = det.score_one(step * 300.0, sample)
        det.learn_one(step * 300.0, sample, verdict)
        pool.step(slots, np.full(2, step * 300.0), np.ones((2, len(det.metrics))))
    return time.perf_counter() - start
