"""The worker's side of model versions: checkpoint and roll back the VMs it owns.

``apply_model_commands`` consumes ``vm.model-commands``, which is co-partitioned with
``vm.metrics``: the command on partition *p* reaches the worker that owns *p*, which

* on ``checkpoint``: writes each of its partition-*p* VMs' signed state to
  ``vm.model-snapshots`` (``<vm_id>@v<version>``, partition *p*), deletes the snapshots of
  the version ``keep`` before, and reports the partition's VMs and evaluation metrics to
  the catalog (``v<version>/p<p>``);
* on ``rollback``: reads partition *p* of the version's snapshots, verifies each signature,
  writes the states back to the ``vm-state`` table (through its changelog) and into the
  processor's cache, and reports (``rollback-<id>/p<p>``). VMs absent from the version keep
  their state; a snapshot that fails verification is refused, counted and logged.

Both run under the metrics agent's lock, between two batches, so a rollback takes effect
from the next event of each VM.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiokafka.errors import KafkaError

from agents.pipeline import VMState
from agents.processor import MetricsProcessor
from schemas.records import to_json
from schemas.validate import Rejected, dead_letter
from streams.model_store import partition_for, read_snapshots, request_checkpoint
from streams.models import Command, PartitionReport, RollbackReport, evaluate, snapshot_key
from streams.state_codec import StateIntegrityError
from streams.tables import vm_state_table
from streams.topics import (
    deadletter_topic,
    model_commands_topic,
    model_snapshots_topic,
    models_topic,
)

if TYPE_CHECKING:
    from streams.app import Service

log = logging.getLogger(__name__)

WriteThrough = Callable[[Any, bytes, bytes, Any], Awaitable[Any]]


def register_model_agent(service: Service, processor: MetricsProcessor, turn: asyncio.Lock,
                         write_through: WriteThrough,
                         flush: Callable[[], Awaitable[object]]) -> None:
    """``flush`` writes the states learned but not yet written (with ``turn`` held)."""
    app, settings = service.app, service.settings
    state_table = service.tables[vm_state_table.name]
    topics = service.topics
    snapshots_name = settings.topic(model_snapshots_topic.name)
    catalog_name = settings.topic(models_topic.name)

    async def send(topic: str, key: bytes, value: bytes | None, partition: int) -> Any:
        return await app.producer.send(topic, key, value, partition, None, None)

    async def checkpoint(cmd: Command, partition: int) -> None:
        await flush()  # the version is what has been learned, not what was last written
        n = settings.partitions
        states: list[VMState] = []
        sent = []
        for key in list(state_table.keys()):
            if partition_for(key, n) != partition:
                continue
            raw = state_table.get(key)
            if raw is None:
                continue
            try:
                state = processor.codec.loads(raw, subject=key)
            except StateIntegrityError as exc:
                log.error("not snapshotting refused state: %s", exc,
                          extra={"vm_id": key.decode(errors="replace")})
                continue
            states.append(state)
            vm_id = key.decode()
            sent.append(await send(snapshots_name, snapshot_key(vm_id, cmd.version), raw,
                                   partition))
            if cmd.version - cmd.keep >= 1:  # a tombstone: compaction drops the old one
                sent.append(await send(snapshots_name,
                                       snapshot_key(vm_id, cmd.version - cmd.keep), None,
                                       partition))
        await asyncio.gather(*sent)
        report = PartitionReport(cmd.version, partition, len(states), evaluate(states),
                                 time.time())
        await (await send(catalog_name, f"v{cmd.version:08d}/p{partition}".encode(),
                          report.to_json(), 0))
        service.metrics.model_checkpoints.inc()
        log.info("checkpoint %d: partition %d, %d VMs", cmd.version, partition, len(states))

    async def rollback(cmd: Command, partition: int, event: Any) -> None:
        snapshots = await read_snapshots(settings, partition, cmd.version)
        restored, refused, written = 0, 0, []
        for vm_id, raw in snapshots.items():
            key = vm_id.encode()
            try:
                state = processor.codec.loads(raw, subject=key)
            except StateIntegrityError as exc:
                refused += 1
                service.metrics.state_load_failures.inc()
                log.error("refusing snapshot of version %d: %s", cmd.version, exc,
                          extra={"vm_id": vm_id})
                continue
            if not isinstance(state, VMState):
                refused += 1
                continue
            written.append(write_through(state_table, key, raw, event))
            processor.install(key, state)
            restored += 1
        await asyncio.gather(*written)
        report = RollbackReport(cmd.request_id, cmd.version, partition, restored, refused,
                                time.time())
        await (await send(catalog_name, f"rollback-{cmd.request_id}/p{partition}".encode(),
                          report.to_json(), 0))
        service.metrics.model_rollbacks.inc()
        log.warning("rolled back %d VMs of partition %d to model version %d (%d refused)",
                    restored, partition, cmd.version, refused)

    if settings.checkpoint_interval_s > 0:
        @app.timer(settings.checkpoint_interval_s, on_leader=True)
        async def take_checkpoint() -> None:
            """A new model version every NOVACRON_CHECKPOINT_INTERVAL_S (leader only)."""
            try:
                version, _ = await request_checkpoint(settings, source="timer", wait_s=0)
            except KafkaError as exc:
                log.error("could not request a checkpoint: %s", exc)
            else:
                log.info("requested checkpoint %d", version)

    @app.agent(topics[model_commands_topic.name], name="apply_model_commands")
    async def apply_model_commands(stream: Any) -> None:
        """Checkpoint or roll back the VMs of the command's partition."""
        async for event in stream.events():
            msg = event.message
            try:
                cmd = Command.from_json(msg.value)
            except (ValueError, KeyError, TypeError) as exc:
                dl = dead_letter(Rejected("wrong_type", f"not a model command: {exc}"),
                                 msg.value, key=msg.key, topic=msg.topic,
                                 partition=msg.partition, offset=msg.offset,
                                 received_at=time.time())
                await topics[deadletter_topic.name].send(key=msg.key, value=to_json(dl))
                continue
            async with turn:
                if cmd.command == "checkpoint":
                    await checkpoint(cmd, msg.partition)
                else:
                    await rollback(cmd, msg.partition, event)

