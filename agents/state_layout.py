"""What a stored state may hold, and the version of its layout.

The ``vm-state`` table, the model snapshots and the ``class-feedback`` table hold states
written by :class:`streams.state_codec.StateCodec`: plain values and instances of exactly the
classes below, nothing else (the codec refuses to write or read any other). Bump
:data:`STATE_LAYOUT` whenever one of these classes changes what its ``__getstate__`` returns:
states written in the previous layout are then refused (their VMs start afresh), never
misread.

Layout history: 3 replaced the pickled states of layouts 1-2, which are refused. 4 (this one)
stores each VM's forecasters as three arrays of rows (:mod:`agents.forecasting.layout`)
instead of their objects, each VM's detector as its rows packed in a few flat arrays
(:func:`agents.anomaly.pool.pack_rows`) and its feature windows' statistics as arrays; states
of layout 3 are refused (their VMs relearn).

>>> codec = state_codec(b"secret")
>>> from agents.pipeline import PipelineConfig, new_state
>>> state = codec.loads(codec.dumps(new_state(PipelineConfig()), subject=b"vm-1"),
...                     subject=b"vm-1")
>>> state.events_total
0
"""

from __future__ import annotations

from agents.anomaly.feedback import ClassSensitivity, IncidentRecord, RecentIncidents, Sensitivity
from agents.anomaly.incidents import Incident, IncidentTracker
from agents.anomaly.vm import VMDetector
from agents.forecasting.series import SeriesForecaster
from agents.forecasting.vm import VMForecaster
from agents.pipeline import VMState
from agents.scaling.patterns import PatternDetector
from agents.scaling.recommender import VMRecommender
from agents.scaling.rightsizing import Change, RightSizer
from agents.scaling.sizing import SizingConfig
from schemas.records import FeatureContribution, HorizonForecast, Recommendation
from streams.features import FeatureExtractor
from streams.state_codec import StateCodec

#: The version of the stored layout of :data:`STATE_CLASSES` (see the module's docstring).
STATE_LAYOUT = 4

#: Every class a stored state may hold an instance of.
STATE_CLASSES: tuple[type, ...] = (
    VMState, FeatureExtractor, VMDetector,
    IncidentTracker, Incident, Sensitivity, RecentIncidents, IncidentRecord, ClassSensitivity,
    VMForecaster, SeriesForecaster,
    VMRecommender, PatternDetector, RightSizer, Change, SizingConfig,
    Recommendation, HorizonForecast, FeatureContribution,
)


def state_codec(key: bytes) -> StateCodec:
    """The codec of every stored state, signing with ``key``."""
    return StateCodec(key, STATE_CLASSES, layout=STATE_LAYOUT)
