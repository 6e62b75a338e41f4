"""Find the JSON Schema of a topic.

>>> schema_for("vm.metrics")["required"][:3]
['vm_id', 'host_id', 'timestamp']
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from streams.topics import ALL_TOPICS


@cache
def schema_for(topic: str) -> dict[str, Any]:
    """The JSON Schema (2020-12) of base topic name ``topic`` (e.g. ``vm.alerts``)."""
    spec = next((t for t in ALL_TOPICS if t.name == topic), None)
    if spec is None:
        raise KeyError(f"unknown topic {topic!r}")
    text = resources.files("schemas").joinpath(spec.schema).read_text(encoding="utf-8")
    return dict(json.loads(text))
