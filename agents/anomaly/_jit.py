"""The compiler for the detectors' per-row kernels.

A detector's state is numpy arrays with one row per series (or VM); its kernels loop over the
rows of a batch and update each in place, which is the shape of the work: every row's update is
a short, sequential computation, too small for a numpy call per step to pay. ``numba`` compiles
them on first use and caches the machine code beside the sources (``__pycache__``), so later
processes start at once. ``NUMBA_DISABLE_JIT=1`` runs them as plain Python (for a debugger).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba

F = TypeVar("F", bound=Callable[..., Any])


def kernel(fn: F) -> F:
    """Compile ``fn`` with numba (no Python objects inside, cached on disk)."""
    return cast(F, numba.njit(cache=True, nogil=True)(fn))
