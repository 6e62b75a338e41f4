"""Reading the Bitbrains traces into vm.metrics messages."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import orjson
import pytest
from jsonschema import Draft202012Validator

from schemas.registry import schema_for
from schemas.validate import Rejected, decode_metric
from streams.traces import TraceError, bitbrains_files, read_fleet, read_vm


def test_real_rows_become_valid_metrics(bitbrains_dir: Path) -> None:
    files = bitbrains_files(bitbrains_dir, vms=2)
    assert sorted(files) == [1, 2]
    validator = Draft202012Validator(schema_for("vm.metrics"))
    rows = list(read_vm(files[1], 1, limit=50))
    assert len(rows) == 50
    for m in rows:
        validator.validate(m)
        assert not isinstance(decode_metric(orjson.dumps(m), now=2e9), Rejected)
    with gzip.open(files[1][0], "rt") as fh:
        next(fh)
        first = [p.strip() for p in next(fh).split(";")]
    assert rows[0]["timestamp"] == float(first[0])
    assert rows[0]["memory_used_bytes"] == pytest.approx(float(first[6]) * 1024)
    assert rows[0]["disk_write_bytes_per_s"] == pytest.approx(float(first[8]) * 1024)


def test_fleet_is_merged_in_time_order(bitbrains_dir: Path) -> None:
    msgs = list(read_fleet(bitbrains_dir, vms=3, per_vm_limit=100))
    assert len(msgs) == 300
    times = [m["timestamp"] for m in msgs]
    assert times == sorted(times)
    assert {m["host_id"] for m in msgs} == {"host-01"}


def test_months_are_joined_without_going_back_in_time(bitbrains_dir: Path) -> None:
    files = bitbrains_files(bitbrains_dir, vms=1)[1]
    assert [f.parent.name for f in files] == ["2013-7", "2013-8"]
    times = [m["timestamp"] for m in read_vm(files, 1)]
    assert all(b > a for a, b in itertools.pairwise(times))


def test_a_wrong_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no Bitbrains files"):
        bitbrains_files(tmp_path)
