"""The service's tables, declared once.

Tables are changelogged to Kafka (``<app_id>-<name>-changelog``, compacted) and kept locally
in rocksdict, so a restarted or rebalanced worker recovers them. ``vm-state`` is keyed by UTF-8
vm_ids, the same keys as the input topics, so a table partition lives with its input
partition. ``class-feedback`` is a GlobalTable keyed by input partition (``partition-<n>``):
one writer per key (the owner of that vm.feedback partition), every worker a reader.
``hosts`` and ``host-directory`` are keyed by host_id, like ``vm.host-usage``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TableSpec:
    name: str
    doc: str
    #: a GlobalTable: every worker holds (and keeps reading) every partition
    is_global: bool = False


vm_state_table = TableSpec(
    "vm-state",
    "Everything learned about one VM: tumbling and sliding feature windows, the anomaly "
    "detector, the forecasters, the scaling rule and the open incident; signed "
    "(streams.state_codec).")

class_feedback_table = TableSpec(
    "class-feedback",
    "Operator verdicts per anomaly class, fleet-wide (agents.anomaly.feedback."
    "ClassSensitivity): one value per vm.feedback partition, written only by the worker that "
    "owns that partition, tied to the feedback message so it lands in the same changelog "
    "partition; a GlobalTable, so every worker reads every partition's counts and adds them "
    "up. Signed like vm-state.", is_global=True)

hosts_table = TableSpec(
    "hosts",
    "Each host's capacity and the VMs reported on it (agents.scaling.placement.HostState as "
    "JSON), keyed by host_id, written by the worker that owns the host's vm.host-usage "
    "partition; GET /hosts/{host_id} is routed to that worker.")

host_directory_table = TableSpec(
    "host-directory",
    "The same host states, readable by every worker (a GlobalTable) so that placement sees "
    "every host; one writer per key, the owner of its vm.host-usage partition.", is_global=True)

input_offsets_table = TableSpec(
    "input-offsets",
    "Per input partition (`<topic>/<partition>`), the offset before which every message's "
    "learned state is written (agents.offsets): a worker taking the partition over reads from "
    "it again when the committed offset ran ahead of what was written.")

ALL_TABLES: tuple[TableSpec, ...] = (vm_state_table, class_feedback_table, hosts_table,
                                     host_directory_table, input_offsets_table)
