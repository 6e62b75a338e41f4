"""The service's tables, declared once.

Tables are changelogged to Kafka (``<app_id>-<name>-changelog``, compacted) and kept locally
in rocksdict, so a restarted or rebalanced worker recovers them. Keys are UTF-8 vm_ids, the
same keys as the input topic, so a table partition lives with its input partition.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TableSpec:
    name: str
    doc: str


vm_state_table = TableSpec(
    "vm-state",
    "Everything learned about one VM: tumbling and sliding feature windows, the anomaly "
    "detector, the forecasters, the scaling rule and the open incident; signed "
    "(streams.state_codec).")

ALL_TABLES: tuple[TableSpec, ...] = (vm_state_table,)
