"""Signed serialization of learned per-VM state for changelogged tables.

State objects (feature windows, River learners) are pickled, compressed and signed with
HMAC-SHA256 under the deployment's secret. :meth:`StateCodec.loads` verifies the signature
before it unpickles anything, so bytes that anyone else wrote to a changelog topic are refused
instead of executed.

>>> codec = StateCodec(b"secret")
>>> codec.loads(codec.dumps({"n": 1}))
{'n': 1}
>>> try:
...     StateCodec(b"other").loads(codec.dumps({"n": 1}))
... except StateIntegrityError as exc:
...     print(exc)
state signature does not match (written with another key, or tampered with)
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
import zlib
from typing import Any

_FORMAT = b"\x02"
_TAG_BYTES = 32


class StateIntegrityError(ValueError):
    """Stored state failed verification and was not loaded."""


class StateCodec:
    """Pickle + zlib + HMAC-SHA256 for state the project itself writes."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("a state signing key must not be empty")
        self._key = key

    def _tag(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()

    def dumps(self, obj: Any) -> bytes:
        body = zlib.compress(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), 1)
        return _FORMAT + self._tag(body) + body

    def loads(self, data: bytes) -> Any:
        if len(data) < 1 + _TAG_BYTES or data[:1] != _FORMAT:
            raise StateIntegrityError("state has an unknown format")
        tag, body = data[1:1 + _TAG_BYTES], data[1 + _TAG_BYTES:]
        if not hmac.compare_digest(tag, self._tag(body)):
            raise StateIntegrityError(
                "state signature does not match (written with another key, or tampered with)")
        try:
            return pickle.loads(zlib.decompress(body))
        except (AttributeError, ImportError, pickle.UnpicklingError, TypeError) as exc:
            # Signed by us, but by a version whose classes have since changed: start afresh.
            raise StateIntegrityError(f"state written by an incompatible version: {exc}") from exc
