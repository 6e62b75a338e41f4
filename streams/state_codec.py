"""Signed, versioned serialization of learned state, as data: decoding never runs code.

A state (a VM's feature windows, detectors, forecasters, ...) is written as a tree of plain
values in a small tagged binary format: None, booleans, integers, floats, strings, bytes,
lists, tuples, dicts, deques, ``array.array`` and numpy arrays (dtype, shape and raw bytes),
and instances of the classes the codec was given, each as its class's name and its
``__getstate__``. Decoding builds only those classes (``cls.__new__`` then ``__setstate__``,
or the attributes set as pickle's default would), so bytes can name nothing else: no import,
no call of anything the writer chose. There is no pickle in it.

The body is compressed (zlib) and signed with HMAC-SHA256 under the deployment's secret. The
signature covers the layout version and the *subject*, the table key the state is stored
under (a vm_id), so a valid state cannot be replayed under another VM, and states written in
another layout are refused (start afresh) instead of misread. :meth:`StateCodec.loads` checks
the signature before it decodes anything.

>>> codec = StateCodec(b"secret", layout=1)
>>> codec.loads(codec.dumps({"n": 1, "x": (0.5, b"ab")}, subject=b"vm-1"), subject=b"vm-1")
{'n': 1, 'x': (0.5, b'ab')}
>>> try:
...     codec.loads(codec.dumps({"n": 1}, subject=b"vm-1"), subject=b"vm-2")
... except StateIntegrityError as exc:
...     print(exc)  # doctest: +ELLIPSIS
state signature does not match (written with another key, for another key, ...)
"""

from __future__ import annotations

import hashlib
import hmac
import math
import struct
import zlib
from array import array
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

_FORMAT = b"\x03"
_TAG_BYTES = 32
_DOMAIN = b"novacron-state\x00"

_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_U32 = struct.Struct("<I")

#: numpy dtypes a stored array may have (anything else is refused on both sides)
_DTYPES = frozenset({"<f8", "<f4", "<f2", "<i8", "<i4", "<i2", "|i1", "<u8", "<u4", "<u2",
                     "|u1", "|b1"})
#: array.array typecodes a stored array may have
_TYPECODES = frozenset("bBhHiIlLqQfd")


class StateIntegrityError(ValueError):
    """Stored state failed verification and was not loaded."""


class StateEncodingError(TypeError):
    """A state holds a value the codec does not write (a class it was not given)."""


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class StateCodec:
    """Tagged binary + zlib + HMAC-SHA256 for state the project itself writes.

    Parameters
    ----------
    key
        The signing key (``NOVACRON_STATE_SIGNING_KEY``).
    classes
        The classes a state may hold instances of (besides plain values).
    layout
        The version of the classes' stored layout: bump it when a class's ``__getstate__``
        changes, and states written before are refused instead of misread.
    """

    def __init__(self, key: bytes, classes: Iterable[type] = (), *, layout: int = 0) -> None:
        if not key:
            raise ValueError("a state signing key must not be empty")
        self._key = key
        self.layout = layout
        self._classes = {_name(cls): cls for cls in classes}
        self._by_type = {cls: _name(cls).encode() for cls in self._classes.values()}
        self._writers: dict[type, Callable[[Any, bytearray], None]] = {
            type(None): _w_none, bool: _w_bool, int: _w_int, float: _w_float, str: _w_str,
            bytes: _w_bytes, list: self._w_list, tuple: self._w_tuple, dict: self._w_dict,
            deque: self._w_deque, array: _w_array, np.ndarray: _w_ndarray,
            np.float64: _w_ndarray_scalar, np.float32: _w_ndarray_scalar,
            np.int64: _w_ndarray_scalar, np.int32: _w_ndarray_scalar,
            np.bool_: _w_ndarray_scalar,
        }

    # -- signing ---------------------------------------------------------------------------
    def _tag(self, subject: bytes, body: bytes) -> bytes:
        mac = hmac.new(self._key, _DOMAIN, hashlib.sha256)
        mac.update(_I64.pack(self.layout))
        mac.update(_U32.pack(len(subject)))
        mac.update(subject)
        mac.update(body)
        return mac.digest()

    def dumps(self, obj: Any, *, subject: bytes) -> bytes:
        """``obj`` encoded, compressed and signed for the table key ``subject``."""
        out = bytearray()
        self._write(obj, out)
        body = zlib.compress(out, 1)
        return _FORMAT + self._tag(subject, body) + body

    def loads(self, data: bytes, *, subject: bytes) -> Any:
        """The state ``dumps`` wrote for ``subject``; :class:`StateIntegrityError` for bytes
        that are not that (another key, another subject, another layout, tampered, or not a
        state at all)."""
        if len(data) < 1 + _TAG_BYTES or data[:1] != _FORMAT:
            raise StateIntegrityError("state has an unknown format (written by an older "
                                      "version, or not a state)")
        tag, body = data[1:1 + _TAG_BYTES], data[1 + _TAG_BYTES:]
        if not hmac.compare_digest(tag, self._tag(subject, body)):
            raise StateIntegrityError(
                "state signature does not match (written with another key, for another key, "
                "in another layout, or tampered with)")
        try:
            raw = zlib.decompress(body)
            obj, end = self._read(memoryview(raw), 0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, struct.error,
                zlib.error, RecursionError) as exc:
            # Signed by us, but not readable by this version's classes: start afresh.
            raise StateIntegrityError(f"state written by an incompatible version: {exc}") from exc
        if end != len(raw):
            raise StateIntegrityError("state has trailing bytes")
        return obj

    # -- writing ---------------------------------------------------------------------------
    def _write(self, obj: Any, out: bytearray) -> None:
        writer = self._writers.get(type(obj))
        if writer is not None:
            writer(obj, out)
            return
        name = self._by_type.get(type(obj))
        if name is None:
            raise StateEncodingError(
                f"cannot store a {_name(type(obj))}: not one of the state's classes")
        if isinstance(obj, tuple):  # a named tuple: its fields
            out += b"u"
            _w_name(name, out)
            self._w_items(obj, out)
            return
        out += b"o"
        _w_name(name, out)
        self._write(obj.__getstate__(), out)

    def _w_items(self, items: list[Any] | tuple[Any, ...], out: bytearray) -> None:
        out += _U32.pack(len(items))
        write = self._write
        for item in items:
            write(item, out)

    def _w_list(self, obj: list[Any], out: bytearray) -> None:
        if obj and _all_floats(obj):
            _w_floats(obj, out, b"L")
            return
        out += b"l"
        self._w_items(obj, out)

    def _w_tuple(self, obj: tuple[Any, ...], out: bytearray) -> None:
        if obj and _all_floats(obj):
            _w_floats(obj, out, b"V")
            return
        out += b"t"
        self._w_items(obj, out)

    def _w_dict(self, obj: dict[Any, Any], out: bytearray) -> None:
        out += b"D"
        out += _U32.pack(len(obj))
        write = self._write
        for k, v in obj.items():
            write(k, out)
            write(v, out)

    def _w_deque(self, obj: deque[Any], out: bytearray) -> None:
        out += b"q"
        out += _I64.pack(-1 if obj.maxlen is None else obj.maxlen)
        self._w_items(list(obj), out)

    # -- reading ---------------------------------------------------------------------------
    def _read(self, buf: memoryview, pos: int) -> tuple[Any, int]:
        tag = buf[pos]
        pos += 1
        if tag == 0x64:  # d
            return _F64.unpack_from(buf, pos)[0], pos + 8
        if tag == 0x73:  # s
            n = _U32.unpack_from(buf, pos)[0]
            pos += 4
            return str(buf[pos:pos + n], "utf-8"), pos + n
        if tag == 0x56 or tag == 0x4C:  # V, L: floats packed
            n = _U32.unpack_from(buf, pos)[0]
            pos += 4
            values = struct.unpack_from(f"<{n}d", buf, pos)
            return (values if tag == 0x56 else list(values)), pos + 8 * n
        if tag == 0x69:  # i
            return _I64.unpack_from(buf, pos)[0], pos + 8
        if tag == 0x4E:  # N
            return None, pos
        if tag == 0x54:  # T
            return True, pos
        if tag == 0x46:  # F
            return False, pos
        if tag in (0x6C, 0x74, 0x71):  # l, t, q
            maxlen = None
            if tag == 0x71:
                m = _I64.unpack_from(buf, pos)[0]
                maxlen, pos = (None if m < 0 else m), pos + 8
            items, pos = self._read_items(buf, pos)
            if tag == 0x6C:
                return items, pos
            return (tuple(items), pos) if tag == 0x74 else (deque(items, maxlen), pos)
        if tag == 0x62:  # b
            n = _U32.unpack_from(buf, pos)[0]
            pos += 4
            return bytes(buf[pos:pos + n]), pos + n
        if tag == 0x44:  # D
            n = _U32.unpack_from(buf, pos)[0]
            pos += 4
            d = {}
            read = self._read
            for _ in range(n):
                k, pos = read(buf, pos)
                d[k], pos = read(buf, pos)
            return d, pos
        if tag == 0x6F or tag == 0x75:  # o, u
            n = buf[pos]
            cls = self._classes[str(buf[pos + 1:pos + 1 + n], "ascii")]
            pos += 1 + n
            if tag == 0x75:
                items, pos = self._read_items(buf, pos)
                return cls(*items), pos
            state, pos = self._read(buf, pos)
            return _rebuilt(cls, state), pos
        if tag == 0x61:  # a
            typecode = chr(buf[pos])
            if typecode not in _TYPECODES:
                raise ValueError(f"refused array typecode {typecode!r}")
            n = _U32.unpack_from(buf, pos + 1)[0]
            pos += 5
            typed = array(typecode)
            typed.frombytes(buf[pos:pos + n])
            return typed, pos + n
        if tag == 0x6E or tag == 0x6D:  # n (array), m (numpy scalar)
            dtype = str(buf[pos:pos + 3], "ascii")
            if dtype not in _DTYPES:
                raise ValueError(f"refused numpy dtype {dtype!r}")
            ndim = buf[pos + 3]
            pos += 4
            shape = struct.unpack_from(f"<{ndim}I", buf, pos)
            pos += 4 * ndim
            size = math.prod(shape) * int(dtype[2])
            arr = np.frombuffer(buf[pos:pos + size], dtype=dtype).reshape(shape).copy()
            return (arr if tag == 0x6E else arr[()]), pos + size
        if tag == 0x49:  # I (a big integer, as decimal digits)
            n = _U32.unpack_from(buf, pos)[0]
            pos += 4
            return int(str(buf[pos:pos + n], "ascii")), pos + n
        raise ValueError(f"unknown tag {tag!r} at {pos - 1}")

    def _read_items(self, buf: memoryview, pos: int) -> tuple[list[Any], int]:
        n = _U32.unpack_from(buf, pos)[0]
        pos += 4
        items = []
        read = self._read
        for _ in range(n):
            item, pos = read(buf, pos)
            items.append(item)
        return items, pos


def _rebuilt(cls: type, state: Any) -> Any:
    """An instance of ``cls`` from its ``__getstate__``, as pickle rebuilds one."""
    obj: Any = object.__new__(cls)
    setstate = getattr(obj, "__setstate__", None)
    if setstate is not None:
        setstate(state)
        return obj
    if state is None:
        return obj
    slots: dict[str, Any] | None = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slots = state
    if state:
        obj.__dict__.update(state)
    for name, value in (slots or {}).items():
        object.__setattr__(obj, name, value)
    return obj


def _all_floats(items: list[Any] | tuple[Any, ...]) -> bool:
    return all(type(x) is float for x in items)


def _w_floats(items: list[float] | tuple[float, ...], out: bytearray, tag: bytes) -> None:
    out += tag
    out += _U32.pack(len(items))
    out += struct.pack(f"<{len(items)}d", *items)


def _w_name(name: bytes, out: bytearray) -> None:
    out.append(len(name))
    out += name


def _w_none(obj: None, out: bytearray) -> None:
    out += b"N"


def _w_bool(obj: bool, out: bytearray) -> None:
    out += b"T" if obj else b"F"


def _w_int(obj: int, out: bytearray) -> None:
    if -(1 << 63) <= obj < (1 << 63):
        out += b"i"
        out += _I64.pack(obj)
    else:
        digits = str(obj).encode()
        out += b"I"
        out += _U32.pack(len(digits))
        out += digits


def _w_float(obj: float, out: bytearray) -> None:
    out += b"d"
    out += _F64.pack(obj)


def _w_str(obj: str, out: bytearray) -> None:
    raw = obj.encode()
    out += b"s"
    out += _U32.pack(len(raw))
    out += raw


def _w_bytes(obj: bytes, out: bytearray) -> None:
    out += b"b"
    out += _U32.pack(len(obj))
    out += obj


def _w_array(obj: array[Any], out: bytearray) -> None:
    raw = obj.tobytes()
    out += b"a"
    out.append(ord(obj.typecode))
    out += _U32.pack(len(raw))
    out += raw


def _w_numpy(obj: np.ndarray, out: bytearray, tag: bytes) -> None:
    dtype = obj.dtype.str
    if dtype not in _DTYPES:
        raise StateEncodingError(f"cannot store a numpy array of dtype {dtype}")
    out += tag
    out += dtype.encode()
    out.append(obj.ndim)
    out += struct.pack(f"<{obj.ndim}I", *obj.shape)
    out += np.ascontiguousarray(obj).tobytes()


def _w_ndarray(obj: np.ndarray, out: bytearray) -> None:
    _w_numpy(obj, out, b"n")


def _w_ndarray_scalar(obj: np.generic, out: bytearray) -> None:
    _w_numpy(np.asarray(obj), out, b"m")
