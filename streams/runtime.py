"""Process-wide tuning shared by everything that runs the learners: the worker, ``novacron
backtest`` and the benchmarks.

Python's cyclic garbage collector starts a young-generation pass every 700 new container
objects (dicts, lists, small records) and a full pass, over every live object, every 100 of
those. A worker allocates a few hundred short-lived containers per event and holds a few
thousand long-lived objects per VM (its trees, statistics and windows), so with the defaults
the collector ran very often, its full passes walking VM states that are still alive (timed
with ``gc.callbacks`` in one run of ``bench/offline.py``, 1,000 VMs and 30,000 events: 2.2 s of
12.2 s, against 0.25 s with these thresholds). :func:`tune_gc` raises the thresholds:
passes are 70 times rarer and full ones rarer still. Nothing the learners build refers to
itself in a cycle (states are freed by reference counting the moment they are dropped), so
this delays only the collection of the rare cyclic garbage of the libraries around them.

>>> import gc
>>> before = gc.get_threshold()
>>> tune_gc()
>>> gc.get_threshold()
(50000, 20, 10)
>>> gc.set_threshold(*before)
"""

from __future__ import annotations

import gc

#: (young, middle, old) thresholds; CPython's defaults are (700, 10, 10).
GC_THRESHOLDS = (50_000, 20, 10)


def tune_gc() -> None:
    """Set the collector's thresholds to :data:`GC_THRESHOLDS` for this process."""
    gc.set_threshold(*GC_THRESHOLDS)
