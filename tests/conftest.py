"""Shared fixtures: real-trace slices and settings with unique topic names."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from schemas.records import MetricEvent
from streams.settings import Settings
from streams.traces import DEFAULT_DATA_DIR, bitbrains_files, read_fleet, read_vm

DATA_DIR = DEFAULT_DATA_DIR
BITBRAINS = DATA_DIR / "bitbrains_rnd"


@pytest.fixture(scope="session")
def bitbrains_dir() -> Path:
    if not BITBRAINS.is_dir():
        pytest.fail(f"the shared traces are missing: {BITBRAINS}")
    return BITBRAINS


@pytest.fixture(scope="session")
def vm1_events(bitbrains_dir: Path) -> list[MetricEvent]:
    """The first 600 samples (~2 days) of Bitbrains VM 1."""
    files = bitbrains_files(bitbrains_dir)[1]
    return [MetricEvent.from_dict(m) for m in read_vm(files, 1, limit=600)]


@pytest.fixture(scope="session")
def fleet_slice(bitbrains_dir: Path) -> list[dict[str, Any]]:
    """4 VMs x 400 samples (~33 h), merged in time order, as vm.metrics messages."""
    return list(read_fleet(bitbrains_dir, vms=4, per_vm_limit=400))


@pytest.fixture
def settings_factory() -> Callable[..., Settings]:
    """Settings with a unique topic prefix and app id, so tests never share topics or groups."""

    def make(**overrides: Any) -> Settings:
        run = uuid.uuid4().hex[:8]
        overrides.setdefault("topic_prefix", f"t{run}.")
        overrides.setdefault("app_id", f"novacron-test-{run}")
        return Settings.from_env({}, **overrides)

    return make
