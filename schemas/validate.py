"""Decode and validate input messages; everything refused becomes a dead letter.

The checks mirror ``vm.metrics.v1.schema.json`` (a test runs both over the same good and bad
messages) plus what a schema cannot say: a timestamp too far in the future, memory used above
memory total. Hand-written rather than a JSON Schema validator because it runs for every event.

>>> decode_metric(b'{"vm_id": "vm-1"}', now=0.0)
Rejected(reason='missing_field', detail='missing field host_id')
>>> decode_metric(b'not json', now=0.0).reason
'not_json'
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass
from typing import Any, get_args

import orjson

from schemas.records import AnomalyClass, DeadLetter, Feedback, HostReport, MetricEvent


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a message was refused: a stable ``reason`` code and a human ``detail``."""

    reason: str
    detail: str


REASONS = (
    "too_large", "not_json", "not_object", "missing_field", "wrong_type", "not_finite",
    "negative_value", "out_of_range", "future_timestamp", "inconsistent", "unknown_verdict",
    "unknown_incident",
)

_STRINGS = ("vm_id", "host_id")
_RATES = ("disk_read_bytes_per_s", "disk_write_bytes_per_s", "net_rx_bytes_per_s",
          "net_tx_bytes_per_s")
_NUMBERS = ("timestamp", "cpu_pct", "memory_used_bytes", "memory_total_bytes", *_RATES)
_ID_MAX_CHARS = 128
#: An incident id is ``<vm_id>/<class>/<start epoch s>`` (agents.anomaly.incidents); the
#: feedback schema's incident_id pattern says the same.
INCIDENT_ID = re.compile(
    r"[\s\S]{1,%d}/(%s)/(0|[1-9][0-9]*)"  # noqa: UP031 - braces of the regex
    % (_ID_MAX_CHARS, "|".join(get_args(AnomalyClass))))


def incident_vm_id(incident_id: str) -> str | None:
    """The vm_id of a well-formed incident id, else None.

    >>> incident_vm_id("vm-0042/io_bottleneck/1761998400")
    'vm-0042'
    >>> incident_vm_id("inc-42") is None
    True
    """
    match = INCIDENT_ID.fullmatch(incident_id)
    return incident_id.rsplit("/", 2)[0] if match else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _load_object(payload: bytes, max_bytes: int) -> dict[str, Any] | Rejected:
    if len(payload) > max_bytes:
        return Rejected("too_large", f"message of {len(payload)} bytes exceeds {max_bytes}")
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return Rejected("not_json", f"not valid JSON: {exc}")
    if not isinstance(data, dict):
        return Rejected("not_object", f"expected a JSON object, got {type(data).__name__}")
    return data


def decode_metric(payload: bytes, *, now: float, max_bytes: int = 65536,
                  max_future_skew_s: float = 300.0) -> MetricEvent | Rejected:
    """Decode one ``vm.metrics`` message, or say why it is refused."""
    data = _load_object(payload, max_bytes)
    if isinstance(data, Rejected):
        return data
    for name in (*_STRINGS, "timestamp", "cpu_pct", "memory_used_bytes", "memory_total_bytes",
                 "vcpus", *_RATES):
        if name not in data:
            return Rejected("missing_field", f"missing field {name}")
    for name in _STRINGS:
        value = data[name]
        if not isinstance(value, str):
            return Rejected("wrong_type", f"{name} must be a string")
        if not 0 < len(value) <= _ID_MAX_CHARS:
            return Rejected("out_of_range", f"{name} must have 1 to {_ID_MAX_CHARS} characters")
    for name in _NUMBERS:
        value = data[name]
        if not _is_number(value):
            return Rejected("wrong_type", f"{name} must be a number, got {type(value).__name__}")
        if not math.isfinite(value):
            return Rejected("not_finite", f"{name} must be finite")
        if value < 0:
            return Rejected("negative_value", f"{name} must not be negative, got {value}")
    vcpus = data["vcpus"]
    if isinstance(vcpus, float) and vcpus.is_integer():
        vcpus = int(vcpus)  # 4.0 is an integer to JSON Schema too
    if not isinstance(vcpus, int) or isinstance(vcpus, bool):
        return Rejected("wrong_type", "vcpus must be an integer")
    if vcpus < 1:
        return Rejected("out_of_range", f"vcpus must be at least 1, got {vcpus}")
    if data["cpu_pct"] > 100:
        return Rejected("out_of_range", f"cpu_pct must be at most 100, got {data['cpu_pct']}")
    if data["memory_total_bytes"] <= 0:
        return Rejected("out_of_range", "memory_total_bytes must be positive")
    if data["memory_used_bytes"] > data["memory_total_bytes"]:
        return Rejected("inconsistent", "memory_used_bytes exceeds memory_total_bytes")
    if data["timestamp"] > now + max_future_skew_s:
        return Rejected("future_timestamp",
                        f"timestamp {data['timestamp']} is more than {max_future_skew_s:g} s "
                        f"ahead of the worker clock {now:.0f}")
    group = data.get("anti_affinity_group")
    if group is not None and not isinstance(group, str):
        return Rejected("wrong_type", "anti_affinity_group must be a string or null")
    return MetricEvent(
        vm_id=data["vm_id"], host_id=data["host_id"], timestamp=float(data["timestamp"]),
        cpu_pct=float(data["cpu_pct"]), memory_used_bytes=float(data["memory_used_bytes"]),
        memory_total_bytes=float(data["memory_total_bytes"]), vcpus=vcpus,
        disk_read_bytes_per_s=float(data["disk_read_bytes_per_s"]),
        disk_write_bytes_per_s=float(data["disk_write_bytes_per_s"]),
        net_rx_bytes_per_s=float(data["net_rx_bytes_per_s"]),
        net_tx_bytes_per_s=float(data["net_tx_bytes_per_s"]),
        anti_affinity_group=group,
    )


def decode_feedback(payload: bytes, *, max_bytes: int = 65536) -> Feedback | Rejected:
    """Decode one ``vm.feedback`` message, or say why it is refused."""
    data = _load_object(payload, max_bytes)
    if isinstance(data, Rejected):
        return data
    for name in ("incident_id", "verdict", "timestamp"):
        if name not in data:
            return Rejected("missing_field", f"missing field {name}")
    if not isinstance(data["incident_id"], str):
        return Rejected("wrong_type", "incident_id must be a string")
    if not 0 < len(data["incident_id"]) <= 256:
        return Rejected("out_of_range", "incident_id must have 1 to 256 characters")
    if incident_vm_id(data["incident_id"]) is None:
        return Rejected("unknown_incident", "incident_id is not an incident id of this "
                        "service (<vm_id>/<anomaly class>/<start epoch s>)")
    if data["verdict"] not in ("false_positive", "confirmed"):
        return Rejected("unknown_verdict", "verdict must be false_positive or confirmed")
    if not _is_number(data["timestamp"]):
        return Rejected("wrong_type", "timestamp must be a number")
    if data["timestamp"] < 0:
        return Rejected("negative_value", "timestamp must not be negative")
    note = data.get("note")
    if note is not None and not isinstance(note, str):
        return Rejected("wrong_type", "note must be a string or null")
    return Feedback(incident_id=data["incident_id"], verdict=data["verdict"],
                    timestamp=float(data["timestamp"]), note=note)


def decode_host_report(payload: bytes, *, max_bytes: int = 65536) -> HostReport | Rejected:
    """Decode one ``vm.host-usage`` message (internal, but checked like any input)."""
    data = _load_object(payload, max_bytes)
    if isinstance(data, Rejected):
        return data
    numbers = ("timestamp", "vcpus", "memory_bytes", "cpu_cores_used", "memory_used_bytes")
    for name in ("host_id", "vm_id", *numbers):
        if name not in data:
            return Rejected("missing_field", f"missing field {name}")
    for name in ("host_id", "vm_id"):
        if not isinstance(data[name], str) or not 0 < len(data[name]) <= _ID_MAX_CHARS:
            return Rejected("wrong_type", f"{name} must be a string of 1 to 128 characters")
    for name in numbers:
        if not _is_number(data[name]):
            return Rejected("wrong_type", f"{name} must be a number")
        if not math.isfinite(data[name]):
            return Rejected("not_finite", f"{name} must be finite")
        if data[name] < 0:
            return Rejected("negative_value", f"{name} must not be negative")
    group = data.get("anti_affinity_group")
    if group is not None and not isinstance(group, str):
        return Rejected("wrong_type", "anti_affinity_group must be a string or null")
    gone = data.get("gone", False)
    if not isinstance(gone, bool):
        return Rejected("wrong_type", "gone must be a boolean")
    return HostReport(host_id=data["host_id"], vm_id=data["vm_id"],
                      **{n: float(data[n]) for n in numbers},
                      anti_affinity_group=group, gone=gone)


def dead_letter(rejected: Rejected, payload: bytes, *, key: bytes | None, topic: str,
                partition: int, offset: int, received_at: float) -> DeadLetter:
    """The dead-letter record for a refused message, carrying its original bytes."""
    return DeadLetter(
        reason=rejected.reason, detail=rejected.detail, source_topic=topic,
        source_partition=partition, source_offset=offset,
        key=key.decode("utf-8", "replace") if key is not None else None,
        payload_b64=base64.b64encode(payload).decode("ascii"),
        payload_size_bytes=len(payload), received_at=received_at,
    )
