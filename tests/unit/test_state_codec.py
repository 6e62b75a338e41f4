"""The state codec: learned state as signed data, never as pickles.

A stored state can only be decoded into plain values and the classes of
:data:`agents.state_layout.STATE_CLASSES`; its signature covers the table key it was written
for and the layout version, so it cannot be replayed under another VM or misread by another
layout.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
import re
import zlib
from array import array
from collections import deque
from pathlib import Path

import numpy as np
import pytest

from agents.pipeline import PipelineConfig, new_state
from agents.state_layout import STATE_CLASSES, STATE_LAYOUT, state_codec
from streams.state_codec import StateCodec, StateEncodingError, StateIntegrityError

REPO = Path(__file__).resolve().parents[2]


def test_plain_values_round_trip_exactly() -> None:
    codec = StateCodec(b"k")
    value = {
        "floats": [0.1, -0.0, float("inf"), 1e308], "mixed": (1, "x", None, True, False, b"\0"),
        ("a", 1): {"nested": [(1.5, 2.5), [3.5]]}, "big": 2 ** 70, "neg": -(2 ** 63),
        "ring": deque([1.0, 2.0], maxlen=3), "unbounded": deque([1]),
        "array": array("f", [1.5, 2.5]), "bytes_array": array("B", [1, 2]),
        "matrix": np.arange(12, dtype=np.int32).reshape(3, 4),
        "mask": np.array([True, False]), "empty": np.zeros((0, 7)),
        "f32": np.ones(3, dtype=np.float32), "scalar": np.float64(0.25), "count": np.int64(3),
    }
    back = codec.loads(codec.dumps(value, subject=b"s"), subject=b"s")
    assert back.keys() == value.keys()
    for key, v in value.items():
        got = back[key]
        assert type(got) is type(v), key
        if isinstance(v, np.ndarray):
            assert got.dtype == v.dtype and got.shape == v.shape and (got == v).all()
            assert got.flags.writeable, "decoded arrays are learners' state: writable"
        elif isinstance(v, deque):
            assert got == v and got.maxlen == v.maxlen
        else:
            assert got == v, key
    assert np.isnan(codec.loads(codec.dumps(float("nan"), subject=b"s"), subject=b"s"))


def test_a_state_is_refused_under_another_key_subject_or_layout() -> None:
    state = new_state(PipelineConfig())
    data = state_codec(b"k").dumps(state, subject=b"vm-1")
    with pytest.raises(StateIntegrityError, match="signature"):
        state_codec(b"k").loads(data, subject=b"vm-2")  # replayed under another VM
    with pytest.raises(StateIntegrityError, match="signature"):
        state_codec(b"other").loads(data, subject=b"vm-1")
    with pytest.raises(StateIntegrityError, match="signature"):
        StateCodec(b"k", STATE_CLASSES, layout=STATE_LAYOUT + 1).loads(data, subject=b"vm-1")
    tampered = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(StateIntegrityError, match="signature"):
        state_codec(b"k").loads(tampered, subject=b"vm-1")


@pytest.mark.parametrize("former_format", [b"\x01", b"\x02"])
def test_pickled_states_of_the_former_formats_are_refused_unread(former_format: bytes) -> None:
    """Layouts 1 and 2 were pickles signed with the same key: refused by their format byte
    before anything is decoded (the VM starts afresh)."""

    class Boom:
        def __reduce__(self) -> tuple[object, ...]:
            return (pytest.fail, ("a stored pickle was run",))

    body = zlib.compress(pickle.dumps(Boom()), 1)
    former = former_format + hmac.new(b"k", body, hashlib.sha256).digest() + body
    with pytest.raises(StateIntegrityError, match="unknown format"):
        state_codec(b"k").loads(former, subject=b"vm-1")


def test_signed_bytes_naming_another_class_are_refused_not_run() -> None:
    """Even with the signing key, bytes can only name the state's classes: a body naming
    anything else (a function, a module) is refused before anything is built."""
    codec = StateCodec(b"k", layout=1)
    for name in (b"os.system", b"builtins.eval", b"subprocess.Popen"):
        body = b"o" + bytes([len(name)]) + name + b"s\x02\x00\x00\x00ls"
        packed = zlib.compress(body, 1)
        data = b"\x03" + codec._tag(b"vm-1", packed) + packed
        with pytest.raises(StateIntegrityError, match="incompatible"):
            codec.loads(data, subject=b"vm-1")
    for dtype in (b"|O8", b"<V8"):  # object arrays would unpickle; refused
        body = b"n" + dtype + b"\x01\x01\x00\x00\x00" + b"\0" * 8
        packed = zlib.compress(body, 1)
        with pytest.raises(StateIntegrityError, match="refused numpy dtype"):
            codec.loads(b"\x03" + codec._tag(b"s", packed) + packed, subject=b"s")


def test_writing_something_outside_the_state_classes_fails_loudly() -> None:
    class Stray:
        pass

    with pytest.raises(StateEncodingError, match="Stray"):
        state_codec(b"k").dumps({"x": Stray()}, subject=b"vm-1")
    with pytest.raises(StateEncodingError, match="dtype"):
        state_codec(b"k").dumps(np.array([object()]), subject=b"vm-1")


def test_nothing_in_the_service_imports_pickle() -> None:
    """No stored state, snapshot, checkpoint or rollback goes through pickle."""
    offenders = [str(path.relative_to(REPO)) for folder in ("agents", "streams", "schemas")
                 for path in (REPO / folder).rglob("*.py")
                 if re.search(r"^\s*(import pickle|from pickle|import cPickle)",
                              path.read_text(), re.MULTILINE)]
    assert offenders == []
