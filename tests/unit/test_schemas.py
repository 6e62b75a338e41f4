"""The JSON Schemas, the AsyncAPI document, the typed records and the hand validator agree.

One JSON Schema (draft 2020-12) per topic lives in ``schemas/``; ``schemas/asyncapi.yaml``
describes the topics and refers to them; ``schemas/records.py`` has one dataclass per topic;
``schemas/validate.py`` checks input by hand. These tests keep the four from drifting apart.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import orjson
import pytest
import yaml
from jsonschema import Draft202012Validator

from schemas import records
from schemas.registry import schema_for
from schemas.validate import REASONS, Rejected, decode_feedback, decode_metric
from streams.settings import Settings
from streams.topics import ALL_TOPICS, MODEL_TOPICS, TopicSpec

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"

RECORD_OF: dict[str, type] = {
    "vm.metrics": records.MetricEvent,
    "vm.feedback": records.Feedback,
    "vm.alerts": records.Alert,
    "vm.forecasts": records.Forecast,
    "vm.recommendations": records.Recommendation,
    "vm.drift": records.DriftEvent,
    "vm.host-usage": records.HostReport,
    "vm.deadletter": records.DeadLetter,
}
TOPICS = [spec.name for spec in ALL_TOPICS]
SPEC_OF = {spec.name: spec for spec in ALL_TOPICS}


# --------------------------------------------------------------------------------- helpers


@cache
def load_schema(topic: str) -> dict[str, Any]:
    return json.loads((SCHEMAS_DIR / SPEC_OF[topic].schema).read_text(encoding="utf-8"))


@cache
def validator(topic: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(topic),
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


@cache
def asyncapi() -> dict[str, Any]:
    return yaml.safe_load((SCHEMAS_DIR / "asyncapi.yaml").read_text(encoding="utf-8"))


def resolve(node: Any, root: dict[str, Any]) -> Any:
    """Follow a local ``$ref`` ("#/a/b") of the AsyncAPI document, repeatedly."""
    while isinstance(node, dict) and "$ref" in node and node["$ref"].startswith("#/"):
        target: Any = root
        for part in node["$ref"][2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def channel_of(topic: str) -> tuple[str, dict[str, Any]]:
    doc = asyncapi()
    found = [(cid, ch) for cid, ch in doc["channels"].items() if ch["address"] == topic]
    assert len(found) == 1, f"expected exactly one channel with address {topic}"
    return found[0]


def asyncapi_messages(topic: str) -> list[dict[str, Any]]:
    doc = asyncapi()
    _, channel = channel_of(topic)
    return [resolve(m, doc) for m in channel["messages"].values()]


def asyncapi_examples(topic: str) -> list[tuple[str, Any, dict[str, Any]]]:
    """(key, payload, example) for every example message of the topic's channel."""
    out = []
    for message in asyncapi_messages(topic):
        keys = message["bindings"]["kafka"]["key"]["examples"]
        assert len(keys) == len(message["examples"]), (
            f"{message['name']}: one key example per message example, in order")
        out += [(key, ex["payload"], ex) for key, ex in zip(keys, message["examples"],
                                                              strict=True)]
    return out


def all_examples(topic: str) -> list[Any]:
    """The schema's own examples, then those of the AsyncAPI document."""
    return [*load_schema(topic)["examples"], *(p for _, p, _ in asyncapi_examples(topic))]


def example_params() -> list[Any]:
    params = []
    for topic in TOPICS:
        n_schema = len(load_schema(topic)["examples"])
        for i, example in enumerate(all_examples(topic)):
            where = f"schema{i}" if i < n_schema else f"asyncapi{i - n_schema}"
            params.append(pytest.param(topic, example, id=f"{topic}-{where}"))
    return params


def numbers_as_floats(value: Any) -> Any:
    """Treat 1 and 1.0 as equal: JSON producers are free to write either for a number."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list):
        return [numbers_as_floats(v) for v in value]
    if isinstance(value, dict):
        return {k: numbers_as_floats(v) for k, v in value.items()}
    raise TypeError(type(value))


def defaults_of(cls: type) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def walk_properties(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict]]:
    """Every (path, property schema) of an object schema and of its $defs."""
    out = []
    for name, prop in schema.get("properties", {}).items():
        out.append((f"{path}{name}", prop))
    for def_name, sub in schema.get("$defs", {}).items():
        out += walk_properties(sub, f"{path}$defs/{def_name}/")
    return out


# ------------------------------------------------------- (a) the schemas are valid schemas


def test_one_schema_file_per_topic() -> None:
    files = sorted(p.name for p in SCHEMAS_DIR.glob("*.schema.json"))
    assert files == sorted(spec.schema for spec in (*ALL_TOPICS, *MODEL_TOPICS) if spec.schema)
    assert set(RECORD_OF) == set(TOPICS)


@pytest.mark.parametrize("topic", TOPICS)
def test_schema_is_valid_draft_2020_12(topic: str) -> None:
    schema = load_schema(topic)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == DRAFT_2020_12
    assert schema["$id"].endswith("/" + SPEC_OF[topic].schema)
    assert schema["title"] and schema["description"]
    assert schema["type"] == "object"
    assert schema["examples"], "every schema has at least one example"
    for path, prop in walk_properties(schema):
        assert prop.get("description"), f"{topic}: property {path} has no description"


@pytest.mark.parametrize("topic", TOPICS)
def test_inputs_are_open_and_outputs_closed(topic: str) -> None:
    schema = load_schema(topic)
    forward_compatible = SPEC_OF[topic].direction == "in"
    assert schema["additionalProperties"] is forward_compatible
    for sub in schema.get("$defs", {}).values():
        assert sub["additionalProperties"] is False


def test_schema_ids_are_unique() -> None:
    ids = [load_schema(topic)["$id"] for topic in TOPICS]
    assert len(set(ids)) == len(ids)


# ------------------------------------------------- (b) every example validates; AsyncAPI


@pytest.mark.parametrize(("topic", "example"), example_params())
def test_example_validates(topic: str, example: Any) -> None:
    errors = [e.message for e in validator(topic).iter_errors(example)]
    assert errors == []


def test_asyncapi_document_shape() -> None:
    doc = asyncapi()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    server = doc["servers"]["local"]
    assert (server["host"], server["protocol"]) == ("127.0.0.1:9092", "kafka")
    addresses = sorted(ch["address"] for ch in doc["channels"].values())
    assert addresses == sorted(TOPICS)
    description = doc["info"]["description"]
    for needed in ("vm_id", "murmur2", "partitioner=murmur2_random", "NOVACRON_PARTITIONS"):
        assert needed in description


@pytest.mark.parametrize("topic", TOPICS)
def test_asyncapi_channel(topic: str) -> None:
    doc = asyncapi()
    channel_id, channel = channel_of(topic)
    binding = channel["bindings"]["kafka"]
    assert binding["topic"] == topic
    assert binding["partitions"] == Settings().partitions

    messages = asyncapi_messages(topic)
    assert messages
    for message in messages:
        payload = message["payload"]
        assert payload["schemaFormat"] == SCHEMA_FORMAT
        assert payload["schema"] == {"$ref": "./" + SPEC_OF[topic].schema}
        key = message["bindings"]["kafka"]["key"]
        assert key["type"] == "string"
        key_field = "host_id" if topic == "vm.host-usage" else "vm_id"
        assert key_field in key["description"] and "UTF-8" in key["description"]
        assert message["examples"], f"{topic}: at least one example message"

    operations = [op for op in doc["operations"].values()
                  if resolve(op["channel"], doc) is channel]
    direction = SPEC_OF[topic].direction
    want = {"in": ["receive"], "out": ["send"], "internal": ["send", "receive"]}[direction]
    assert sorted(op["action"] for op in operations) == sorted(want), topic
    for operation in operations:
        assert operation["channel"] == {"$ref": f"#/channels/{channel_id}"}
        assert [resolve(m, doc) for m in operation["messages"]] == messages


@pytest.mark.parametrize("topic", TOPICS)
def test_asyncapi_example_keys(topic: str) -> None:
    for key, payload, _ in asyncapi_examples(topic):
        assert isinstance(key, str) and 0 < len(key) <= 128
        if topic == "vm.host-usage":
            assert key == payload["host_id"], "host reports are keyed by host_id"
        elif "vm_id" in payload:
            assert key == payload["vm_id"], "records are keyed by vm_id"
        if topic == "vm.deadletter":
            assert key == payload["key"], "a dead letter keeps the key of the refused message"


def dead_letter_examples() -> list[Any]:
    return [pytest.param(e, id=f"{i}") for i, e in enumerate(all_examples("vm.deadletter"))]


@pytest.mark.parametrize("example", dead_letter_examples())
def test_dead_letter_example_carries_the_real_refused_message(example: dict[str, Any]) -> None:
    payload = base64.b64decode(example["payload_b64"], validate=True)
    assert base64.b64encode(payload).decode("ascii") == example["payload_b64"]
    assert len(payload) == example["payload_size_bytes"]
    if example["source_topic"] == "vm.metrics":
        result = decode_metric(payload, now=example["received_at"])
    else:
        assert example["source_topic"] == "vm.feedback"
        result = decode_feedback(payload)
    assert isinstance(result, Rejected)
    assert result.reason == example["reason"]


def test_dead_letter_reason_enum_is_validate_reasons() -> None:
    assert load_schema("vm.deadletter")["properties"]["reason"]["enum"] == list(REASONS)


# ------------------------------------------------ (c) the records round-trip the examples


@pytest.mark.parametrize(("topic", "example"), example_params())
def test_record_round_trip(topic: str, example: dict[str, Any]) -> None:
    cls = RECORD_OF[topic]
    record = cls.from_dict(example)  # type: ignore[attr-defined]
    data = orjson.loads(records.to_json(record))
    names = {f.name for f in dataclasses.fields(cls)}
    # Unknown fields (allowed on input topics) are dropped; absent optional ones get defaults.
    expected = {**defaults_of(cls), **{k: v for k, v in example.items() if k in names}}
    assert numbers_as_floats(data) == numbers_as_floats(expected)
    assert [e.message for e in validator(topic).iter_errors(data)] == []
    assert cls.from_dict(data) == record  # type: ignore[attr-defined]


# -------------------------------- (d) decode_metric and the JSON Schema agree on vm.metrics

GOOD_METRIC: dict[str, Any] = load_schema("vm.metrics")["examples"][0]
NOW = GOOD_METRIC["timestamp"] + 60.0
DELETE = object()


def modified(base: dict[str, Any], changes: dict[str, Any]) -> bytes:
    """``base`` with ``changes`` applied (a value of DELETE removes the field), as JSON."""
    data = dict(base)
    for name, value in changes.items():
        if value is DELETE:
            del data[name]
        else:
            data[name] = value
    return orjson.dumps(data)


def metric(**changes: Any) -> bytes:
    return modified(GOOD_METRIC, changes)


def schema_accepts(topic: str, payload: bytes) -> bool:
    return validator(topic).is_valid(orjson.loads(payload))


GOOD_METRICS = [
    pytest.param(metric(), id="example"),
    pytest.param(orjson.dumps(all_examples("vm.metrics")[-1]), id="extra-field"),
    pytest.param(metric(anti_affinity_group=None), id="null-group"),
    pytest.param(metric(anti_affinity_group="web"), id="group"),
    pytest.param(metric(cpu_pct=0), id="cpu-0"),
    pytest.param(metric(cpu_pct=100.0), id="cpu-100"),
    pytest.param(metric(vcpus=1), id="vcpus-1"),
    pytest.param(metric(timestamp=0), id="timestamp-0"),
    pytest.param(metric(timestamp=NOW + 300), id="timestamp-at-skew-limit"),
    pytest.param(metric(memory_used_bytes=GOOD_METRIC["memory_total_bytes"]), id="memory-full"),
    pytest.param(metric(memory_used_bytes=0, disk_read_bytes_per_s=0), id="zeros"),
    pytest.param(metric(vm_id="v" * 128), id="vm_id-128-chars"),
    pytest.param(metric(vm_id="\u00e9" * 128), id="vm_id-128-non-ascii-chars"),
    pytest.param(metric(memory_total_bytes=1e-3, memory_used_bytes=0), id="tiny-total"),
]

BAD_METRICS = [
    pytest.param(metric(host_id=DELETE), "missing_field", id="missing-host_id"),
    pytest.param(metric(cpu_pct=DELETE), "missing_field", id="missing-cpu_pct"),
    pytest.param(metric(vcpus=DELETE), "missing_field", id="missing-vcpus"),
    pytest.param(metric(net_tx_bytes_per_s=DELETE), "missing_field", id="missing-net_tx"),
    pytest.param(metric(cpu_pct="37.5"), "wrong_type", id="cpu_pct-string"),
    pytest.param(metric(cpu_pct=True), "wrong_type", id="cpu_pct-bool"),
    pytest.param(metric(cpu_pct=None), "wrong_type", id="cpu_pct-null"),
    pytest.param(metric(vcpus=True), "wrong_type", id="vcpus-bool"),
    pytest.param(metric(vcpus="4"), "wrong_type", id="vcpus-string"),
    pytest.param(metric(vcpus=4.5), "wrong_type", id="vcpus-fraction"),
    pytest.param(metric(vm_id=42), "wrong_type", id="vm_id-number"),
    pytest.param(metric(host_id=None), "wrong_type", id="host_id-null"),
    pytest.param(metric(timestamp="2025-11-01T12:00:00Z"), "wrong_type", id="timestamp-iso"),
    pytest.param(metric(anti_affinity_group=7), "wrong_type", id="group-number"),
    pytest.param(metric(disk_read_bytes_per_s=-1), "negative_value", id="negative-disk-read"),
    pytest.param(metric(net_rx_bytes_per_s=-0.5), "negative_value", id="negative-net-rx"),
    pytest.param(metric(memory_used_bytes=-1), "negative_value", id="negative-memory-used"),
    pytest.param(metric(memory_total_bytes=-8), "negative_value", id="negative-memory-total"),
    pytest.param(metric(timestamp=-1), "negative_value", id="negative-timestamp"),
    pytest.param(metric(cpu_pct=101), "out_of_range", id="cpu_pct-101"),
    pytest.param(metric(cpu_pct=100.001), "out_of_range", id="cpu_pct-just-above-100"),
    pytest.param(metric(vcpus=0), "out_of_range", id="vcpus-0"),
    pytest.param(metric(vcpus=-2), "out_of_range", id="vcpus-negative"),
    pytest.param(metric(memory_total_bytes=0, memory_used_bytes=0), "out_of_range",
                 id="memory-total-0"),
    pytest.param(metric(vm_id=""), "out_of_range", id="vm_id-empty"),
    pytest.param(metric(host_id=""), "out_of_range", id="host_id-empty"),
    pytest.param(metric(vm_id="v" * 129), "out_of_range", id="vm_id-129-chars"),
    pytest.param(metric(vm_id="\u00e9" * 129), "out_of_range", id="vm_id-129-non-ascii-chars"),
    pytest.param(b"[1, 2]", "not_object", id="array"),
    pytest.param(b'"vm-0042"', "not_object", id="string"),
    pytest.param(b"null", "not_object", id="null"),
]


@pytest.mark.parametrize("payload", GOOD_METRICS)
def test_good_metric_accepted_by_both(payload: bytes) -> None:
    event = decode_metric(payload, now=NOW)
    assert isinstance(event, records.MetricEvent), event
    assert schema_accepts("vm.metrics", payload)
    data = orjson.loads(payload)
    assert event.vm_id == data["vm_id"] and event.vcpus == data["vcpus"]
    assert event.metrics() == {k: float(data[k]) for k in records.METRIC_FIELDS}


@pytest.mark.parametrize(("payload", "reason"), BAD_METRICS)
def test_bad_metric_refused_by_both(payload: bytes, reason: str) -> None:
    result = decode_metric(payload, now=NOW)
    assert isinstance(result, Rejected), result
    assert result.reason == reason, result.detail
    assert not schema_accepts("vm.metrics", payload)


TOO_LARGE = metric(padding="x" * 70_000)

ONLY_HAND_REFUSES = [
    pytest.param(metric(timestamp=NOW + 301), "future_timestamp", id="future-timestamp"),
    pytest.param(metric(timestamp=1e12), "future_timestamp", id="far-future-timestamp"),
    pytest.param(metric(memory_used_bytes=GOOD_METRIC["memory_total_bytes"] + 1),
                 "inconsistent", id="memory-used-above-total"),
    pytest.param(TOO_LARGE, "too_large", id="too-large"),
]


@pytest.mark.parametrize(("payload", "reason"), ONLY_HAND_REFUSES)
def test_metric_refused_only_by_hand_validator(payload: bytes, reason: str) -> None:
    result = decode_metric(payload, now=NOW)
    assert isinstance(result, Rejected), result
    assert result.reason == reason, result.detail
    assert schema_accepts("vm.metrics", payload)


@pytest.mark.parametrize("payload", [
    pytest.param(b"not json", id="text"),
    pytest.param(metric()[:-1], id="truncated"),
    pytest.param(b"", id="empty"),
    pytest.param(b'{"vm_id": NaN}', id="nan"),
    pytest.param(metric().replace(b'"cpu_pct":', b'"cpu_pct":NaN,"x":'), id="nan-metric"),
    pytest.param(b'{"cpu_pct": Infinity}', id="infinity"),
    pytest.param(b'{"cpu_pct": -Infinity}', id="minus-infinity"),
    pytest.param(b'{"cpu_pct": 1e400}', id="overflows-to-inf"),
    pytest.param(b"\xff\xfe{}", id="not-utf8"),
])
def test_not_json_is_refused_before_any_schema(payload: bytes) -> None:
    result = decode_metric(payload, now=NOW)
    assert isinstance(result, Rejected)
    assert result.reason == "not_json"
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(payload)


def test_size_limit_comes_first() -> None:
    assert len(TOO_LARGE) > 65536
    assert decode_metric(TOO_LARGE, now=NOW, max_bytes=len(TOO_LARGE)) == decode_metric(
        metric(), now=NOW)


GOOD_FEEDBACK = load_schema("vm.feedback")["examples"][0]


def feedback(**changes: Any) -> bytes:
    return modified(GOOD_FEEDBACK, changes)


@pytest.mark.parametrize("payload", [
    pytest.param(feedback(), id="example"),
    pytest.param(feedback(note=None), id="null-note"),
    pytest.param(feedback(note=DELETE), id="no-note"),
    pytest.param(feedback(verdict="confirmed", timestamp=0), id="confirmed"),
    pytest.param(feedback(incident_id="dc1/vm-7/flatline/0"), id="vm-id-with-slash"),
    pytest.param(feedback(operator="alice"), id="extra-field"),
])
def test_good_feedback_accepted_by_both(payload: bytes) -> None:
    assert isinstance(decode_feedback(payload), records.Feedback)
    assert schema_accepts("vm.feedback", payload)


@pytest.mark.parametrize(("payload", "reason"), [
    pytest.param(feedback(verdict=DELETE), "missing_field", id="missing-verdict"),
    pytest.param(feedback(timestamp=DELETE), "missing_field", id="missing-timestamp"),
    pytest.param(feedback(incident_id=""), "out_of_range", id="empty-incident"),
    pytest.param(feedback(incident_id=5), "wrong_type", id="incident-number"),
    pytest.param(feedback(incident_id="inc-42"), "unknown_incident", id="not-an-incident-id"),
    pytest.param(feedback(incident_id="vm-1/disk_full/5"), "unknown_incident",
                 id="unknown-class"),
    pytest.param(feedback(incident_id="vm-1/cpu_spike/01"), "unknown_incident",
                 id="start-not-canonical"),
    pytest.param(feedback(incident_id="/cpu_spike/5"), "unknown_incident", id="no-vm"),
    pytest.param(feedback(verdict="maybe"), "unknown_verdict", id="unknown-verdict"),
    pytest.param(feedback(verdict=None), "unknown_verdict", id="null-verdict"),
    pytest.param(feedback(timestamp="now"), "wrong_type", id="timestamp-string"),
    pytest.param(feedback(timestamp=False), "wrong_type", id="timestamp-bool"),
    pytest.param(feedback(note=3), "wrong_type", id="note-number"),
    pytest.param(b"[]", "not_object", id="array"),
])
def test_bad_feedback_refused_by_both(payload: bytes, reason: str) -> None:
    result = decode_feedback(payload)
    assert isinstance(result, Rejected), result
    assert result.reason == reason, result.detail
    assert not schema_accepts("vm.feedback", payload)


# ------------------------------------- (e) dataclass fields and schema properties coincide


def _types_of(prop: dict[str, Any]) -> set[str]:
    kind = prop["type"]
    return {kind} if isinstance(kind, str) else set(kind)


def _check_field(where: str, hint: Any, prop: dict[str, Any], schema: dict[str, Any]) -> None:
    types_ = _types_of(prop)
    args = get_args(hint)
    if get_origin(hint) in (types.UnionType, typing.Union) and type(None) in args:
        assert "null" in types_, f"{where}: the dataclass allows None, the schema does not"
        types_ -= {"null"}
        (hint,) = [a for a in args if a is not type(None)]
    else:
        assert "null" not in types_, f"{where}: the schema allows null, the dataclass does not"
    origin = get_origin(hint)
    if origin is Literal:
        assert types_ == {"string"} and sorted(prop["enum"]) == sorted(get_args(hint)), where
    elif origin is list:
        assert types_ == {"array"}, where
        (item,) = get_args(hint)
        if dataclasses.is_dataclass(item):
            ref = prop["items"]["$ref"]
            assert ref.startswith("#/$defs/"), where
            _check_record(f"{where}[]", item, schema["$defs"][ref.removeprefix("#/$defs/")],
                          schema)
        else:
            assert item is str and prop["items"] == {"type": "string"}, where
    else:
        want = {str: "string", float: "number", int: "integer", bool: "boolean"}[hint]
        assert types_ == {want}, f"{where}: {hint.__name__} but schema type {prop['type']}"


def _check_record(where: str, cls: type, sub: dict[str, Any], schema: dict[str, Any]) -> None:
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    assert sorted(sub["properties"]) == sorted(names), where
    required = [f.name for f in fields if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING]
    assert sorted(sub["required"]) == sorted(required), where
    hints = get_type_hints(cls)
    for name in names:
        _check_field(f"{where}.{name}", hints[name], sub["properties"][name], schema)


@pytest.mark.parametrize("topic", TOPICS)
def test_dataclass_fields_match_schema_properties(topic: str) -> None:
    schema = load_schema(topic)
    _check_record(topic, RECORD_OF[topic], schema, schema)


@pytest.mark.parametrize("topic", TOPICS)
def test_schema_defaults_are_the_dataclass_defaults(topic: str) -> None:
    schema = load_schema(topic)
    defaults = defaults_of(RECORD_OF[topic])
    for name, prop in schema["properties"].items():
        if "default" in prop:
            assert prop["default"] == defaults[name], f"{topic}.{name}"


def test_topic_specs_name_existing_schemas() -> None:
    for spec in ALL_TOPICS:
        assert isinstance(spec, TopicSpec)
        assert (SCHEMAS_DIR / spec.schema).is_file()
        assert spec.schema == f"{spec.name}.v1.schema.json"


def test_integral_float_vcpus_accepted_by_both() -> None:
    """JSON Schema counts 4.0 as an integer; so does the worker (Go clients may write it)."""
    payload = metric(vcpus=4.0)
    event = decode_metric(payload, now=NOW)
    assert not isinstance(event, Rejected), event
    assert event.vcpus == 4 and isinstance(event.vcpus, int)
    Draft202012Validator(schema_for("vm.metrics")).validate(orjson.loads(payload))
