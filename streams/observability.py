"""Prometheus metrics of a worker, on an injected registry.

Tests build a fresh ``CollectorRegistry()``; the worker passes the one it serves at
``/metrics``. No module-level metric objects: two workers in one process (or two tests) never
share counters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_BATCH_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BYTES_BUCKETS = (1024, 4096, 8192, 16384, 24576, 32768, 49152, 65536, 131072)
_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def partition_lag(end_offsets: Mapping[Any, int], read_offsets: Mapping[Any, int]
                  ) -> dict[Any, int]:
    """Messages not yet read per topic partition, from Faust's monitor: ``end_offsets`` (the
    next offset to be written) and ``read_offsets`` (the last offset read)."""
    return {tp: max(0, end - read_offsets.get(tp, -1) - 1) for tp, end in end_offsets.items()}


class WorkerMetrics:
    """The counters and histograms one worker updates."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events_in = Counter(
            "novacron_events_in_total", "Messages read from an input topic.", ["topic"],
            registry=r)
        self.events_processed = Counter(
            "novacron_events_processed_total", "Valid metric events processed.", registry=r)
        self.events_deadlettered = Counter(
            "novacron_events_deadlettered_total", "Messages sent to the dead-letter topic.",
            ["reason"], registry=r)
        self.events_rekeyed = Counter(
            "novacron_events_rekeyed_total",
            "Metric messages whose key was not their vm_id, re-published keyed by vm_id.",
            registry=r)
        self.records_published = Counter(
            "novacron_records_published_total", "Records published to an output topic.",
            ["topic"], registry=r)
        self.feedback = Counter(
            "novacron_feedback_total",
            "Operator verdicts (vm.feedback) applied to a recent incident of their VM.",
            ["verdict"], registry=r)
        self.class_factor = Gauge(
            "novacron_class_feedback_factor",
            "Fleet-wide threshold factor of an anomaly class from operator verdicts, as this "
            "worker sees it (above 1: less eager to open it).", ["anomaly_class"], registry=r)
        self.model_checkpoints = Counter(
            "novacron_model_checkpoints_total",
            "Partitions this worker snapshotted into a model version.", registry=r)
        self.model_rollbacks = Counter(
            "novacron_model_rollbacks_total",
            "Partitions this worker rolled back to a model version.", registry=r)
        self.input_gaps = Counter(
            "novacron_input_gaps_total",
            "Input ranges committed but whose learned state was not written (the committed "
            "offset ran ahead of the learned mark: after a takeover or restart), read again "
            "(agents.offsets).", registry=r)
        self.vms_expired = Counter(
            "novacron_vms_expired_total",
            "VM states deleted after NOVACRON_IDLE_VM_EXPIRY_S without events.", registry=r)
        self.state_load_failures = Counter(
            "novacron_state_load_failures_total",
            "Stored VM states refused (bad signature or format); the VM starts afresh.",
            registry=r)
        self.batch_size = Histogram(
            "novacron_batch_events", "Events per processed batch.", buckets=_BATCH_BUCKETS,
            registry=r)
        self.batch_seconds = Histogram(
            "novacron_batch_processing_seconds", "Time to process one batch, publishing "
            "included, per agent.", ["agent"], buckets=_SECONDS_BUCKETS, registry=r)
        self.end_to_end_seconds = Histogram(
            "novacron_end_to_end_seconds",
            "From an input record's Kafka timestamp (when it was produced) to the moment its "
            "outputs are published.", buckets=_LATENCY_BUCKETS, registry=r)
        self.consumer_lag = Gauge(
            "novacron_consumer_lag_messages",
            "Messages not yet read, per assigned topic partition, as of the last scrape.",
            ["topic", "partition"], registry=r)
        self.incidents = Counter(
            "novacron_incidents_total", "Incidents opened, by anomaly class and severity.",
            ["anomaly_class", "severity"], registry=r)
        self.drift_events = Counter(
            "novacron_drift_events_total", "Forecast drift events published, by metric.",
            ["metric"], registry=r)
        self.forecast_abs_error = Counter(
            "novacron_forecast_abs_error_total",
            "Sum of |forecast - actual| of the shortest horizon's forecasts, by metric; "
            "divide its rate by novacron_forecast_abs_actual_total's for the online WAPE.",
            ["metric"], registry=r)
        self.forecast_abs_actual = Counter(
            "novacron_forecast_abs_actual_total",
            "Sum of |actual| over the same scored forecasts, by metric.", ["metric"],
            registry=r)
        self.state_bytes = Histogram(
            "novacron_vm_state_bytes", "Size of each VM state written to the vm-state table "
            "(signed, compressed).", buckets=_BYTES_BUCKETS, registry=r)
        self.recommendations = Counter(
            "novacron_recommendations_total", "Recommendations published, by action.",
            ["action"], registry=r)
        self.host_reports = Counter(
            "novacron_host_reports_total",
            "VM reports applied to the hosts tables by this worker (vm.host-usage).",
            registry=r)
        self.vm_patterns = Gauge(
            "novacron_vm_patterns",
            "VMs held by this worker per workload pattern (periodic_daily, bursty, ...), as of "
            "the last scrape.", ["pattern"], registry=r)
        self.cached_vms = Gauge(
            "novacron_cached_vms", "VM states held decoded in the worker's memory.", registry=r)

    def set_lag(self, end_offsets: dict[Any, int], read_offsets: dict[Any, int]) -> None:
        """Consumer lag per topic partition from Faust's monitor (``tp_end_offsets``, the
        next offset to be written, and ``tp_read_offsets``, the last offset read)."""
        for tp, lag in partition_lag(end_offsets, read_offsets).items():
            self.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
