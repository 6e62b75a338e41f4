"""The service's topics, declared once.

Each topic is a small module-level :class:`TopicSpec`: its base name, its JSON Schema in
``schemas/`` and what it carries. :func:`streams.app.create_app` binds them to a Faust app with
the deployment's prefix and partition count. Every topic but ``vm.host-usage`` is keyed by
``vm_id`` (UTF-8), so all of a VM's records share one partition and the tables built from them
are co-partitioned; ``vm.host-usage`` is keyed by ``host_id`` and feeds the hosts tables.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicSpec:
    name: str
    schema: str
    doc: str
    #: "in" (the service consumes it), "out" (it publishes it) or "internal" (both: between
    #: its own agents, re-keyed)
    direction: str
    #: partitions, when not NOVACRON_PARTITIONS (co-partitioned with vm.metrics)
    partitions: int | None = None
    #: compacted (the latest record per key is kept) instead of deleted by age
    compacted: bool = False


metrics_topic = TopicSpec(
    "vm.metrics", "vm.metrics.v1.schema.json",
    "VM metrics from the hypervisor agents: one JSON object per VM sample.", "in")
feedback_topic = TopicSpec(
    "vm.feedback", "vm.feedback.v1.schema.json",
    "Operator verdicts on incidents (false_positive or confirmed).", "in")
alerts_topic = TopicSpec(
    "vm.alerts", "vm.alerts.v1.schema.json",
    "Classified anomalies (incidents) with severity, confidence and explaining features.", "out")
forecasts_topic = TopicSpec(
    "vm.forecasts", "vm.forecasts.v1.schema.json",
    "Multi-horizon resource and bandwidth forecasts with prediction intervals.", "out")
recommendations_topic = TopicSpec(
    "vm.recommendations", "vm.recommendations.v1.schema.json",
    "scale_up / scale_down / migrate recommendations for the DWCP scheduler.", "out")
drift_topic = TopicSpec(
    "vm.drift", "vm.drift.v1.schema.json",
    "A VM metric's forecast errors changed regime; its forecasters were reselected.", "out")
deadletter_topic = TopicSpec(
    "vm.deadletter", "vm.deadletter.v1.schema.json",
    "Input messages the service could not accept, with the reason, the original bytes and "
    "where they came from.", "out")
host_usage_topic = TopicSpec(
    "vm.host-usage", "vm.host-usage.v1.schema.json",
    "Internal: each VM's allocation and use reported to its host, keyed by host_id, so the "
    "worker owning the host keeps the hosts tables that placement reads.", "internal")

ALL_TOPICS: tuple[TopicSpec, ...] = (
    metrics_topic, feedback_topic, alerts_topic, forecasts_topic, recommendations_topic,
    drift_topic, deadletter_topic, host_usage_topic,
)

# -- the model catalog (control plane; see streams.models). Not part of the AsyncAPI data
# plane: the catalog and commands have JSON Schemas, the snapshots are signed state.
models_topic = TopicSpec(
    "vm.models", "vm.models.v1.schema.json",
    "The model catalog: each checkpoint version (kind, parameters, created time), each "
    "partition's report on it (VMs, evaluation metrics) and each rollback and its "
    "completion; JSON, one partition, compacted.", "internal", partitions=1, compacted=True)
model_commands_topic = TopicSpec(
    "vm.model-commands", "vm.model-commands.v1.schema.json",
    "Checkpoint and rollback commands, one per partition so the worker owning each "
    "partition carries it out for its VMs; JSON, co-partitioned with vm.metrics.",
    "internal")
model_snapshots_topic = TopicSpec(
    "vm.model-snapshots", "",
    "Each VM's learned state in each kept version, keyed <vm_id>@v<version>: the signed "
    "bytes of the vm-state table (HMAC-verified before loading); co-partitioned with "
    "vm.metrics, compacted.", "internal", compacted=True)

MODEL_TOPICS: tuple[TopicSpec, ...] = (models_topic, model_commands_topic,
                                       model_snapshots_topic)
