"""The Faust application factory.

``create_app(settings)`` builds the app, binds the topics of :mod:`streams.topics` and the
tables of :mod:`streams.tables`, registers the agents and the web pages. Nothing is built at
import time, so tests and several workers in one process never share hidden state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import TableT
from prometheus_client import CollectorRegistry

from streams import tables as table_specs
from streams import topics as topic_specs
from streams.observability import WorkerMetrics
from streams.settings import Settings
from streams.status import StatusBoard

log = logging.getLogger(__name__)


@dataclass
class Service:
    """A built app with its bound topics and tables."""

    app: faust.App
    settings: Settings
    metrics: WorkerMetrics
    topics: dict[str, faust.TopicT]
    tables: dict[str, TableT]
    processor: Any = None  # agents.processor.MetricsProcessor, set by register_agents
    #: what this worker processed lately, for the status page (fed by the metrics agent)
    status: StatusBoard = field(default_factory=StatusBoard)


def broker_urls(bootstrap_servers: str) -> list[str]:
    return [f"kafka://{server.strip()}" for server in bootstrap_servers.split(",")
            if server.strip()]


def broker_credentials(settings: Settings) -> Any:
    """Faust's credentials for ``settings.security_protocol`` (None for PLAINTEXT): the same
    TLS context and SASL user as :meth:`Settings.kafka_client_options` gives aiokafka."""
    options = settings.kafka_client_options()
    context = options.get("ssl_context")
    if settings.security_protocol.startswith("SASL_"):
        return faust.SASLCredentials(username=settings.sasl_username,
                                     password=settings.sasl_password, ssl_context=context,
                                     mechanism=settings.sasl_mechanism)
    if settings.security_protocol == "SSL":
        return faust.SSLCredentials(context)
    return None


def store_options(settings: Settings) -> dict[str, int]:
    """RocksDB options of every table partition: small memtables and block cache, so a
    worker's memory is bounded by partitions x tables x (2 memtables + cache)."""
    return {"write_buffer_size": settings.store_write_buffer_mb * 2**20,
            "max_write_buffer_number": 2,
            "block_cache_size": settings.store_block_cache_mb * 2**20}


def create_app(settings: Settings, registry: CollectorRegistry | None = None) -> Service:
    """Build the Faust app for ``settings`` with every topic, table, agent and page."""
    if not settings.bootstrap_servers:
        raise ValueError("KAFKA_BOOTSTRAP_SERVERS is empty: name a Kafka cluster, or use "
                         "`novacron run`, which starts a local broker")
    app = faust.App(
        settings.app_id,
        broker=broker_urls(settings.bootstrap_servers),
        broker_credentials=broker_credentials(settings),
        store="rocksdb://",
        datadir=settings.data_dir,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        table_standby_replicas=settings.standby_replicas,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        producer_max_request_size=max(1_048_576, 2 * settings.max_message_bytes),
        autodiscover=False,
        logging_config=None,
    )
    topics = {
        spec.name: app.topic(settings.topic(spec.name), key_type=bytes, value_type=bytes,
                             partitions=spec.partitions or settings.partitions,
                             compacting=spec.compacted or None, key_serializer="raw",
                             value_serializer="raw")
        for spec in (*topic_specs.ALL_TOPICS, *topic_specs.MODEL_TOPICS)
    }
    tables: dict[str, TableT] = {}
    for spec in table_specs.ALL_TABLES:
        # recovery_buffer_size=1: Faust otherwise applies changelog records read by a
        # standby (or a GlobalTable reader) in batches of 1,000, and records still buffered
        # when a standby is promoted on failover are lost; with 1 each is applied at once.
        kind = app.GlobalTable if spec.is_global else app.Table
        tables[spec.name] = kind(spec.name, key_type=bytes, value_type=bytes,  # raw
                                 partitions=settings.partitions, recovery_buffer_size=1,
                                 options=store_options(settings), help=spec.doc)
    service = Service(app=app, settings=settings, metrics=WorkerMetrics(registry),
                      topics=topics, tables=tables)
    # Imported here: the agents module needs a built service to attach to.
    from agents.metrics_agent import register_agents
    from streams.web import register_pages

    register_agents(service)
    register_pages(service)
    return service
