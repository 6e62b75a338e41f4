"""Every compiled kernel, loaded before a worker consumes.

>>> warm_up() >= 0.0
True
"""

from __future__ import annotations

from agents.anomaly.pool import warm_up as warm_up_detectors
from agents.forecasting.fleet import warm_up as warm_up_forecasters


def warm_up() -> float:
    """Compile the detectors' and forecasters' kernels now, or load them from numba's
    on-disk cache, so the first batch does not stall the event loop for a compilation: the
    seconds it took."""
    return warm_up_detectors() + warm_up_forecasters()
