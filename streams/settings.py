"""One frozen, typed settings object, read from environment variables.

Every field names its environment variable and documents itself; ``novacron settings`` prints
the table and ``docs/settings.md`` is generated from it (a test keeps the two in sync).

>>> s = Settings.from_env({"NOVACRON_PARTITIONS": "4"})
>>> s.partitions, s.topic_prefix
(4, '')
>>> Settings.from_env({"NOVACRON_PARTITIONS": "zero"})
Traceback (most recent call last):
...
streams.settings.ConfigError: NOVACRON_PARTITIONS: expected an integer, got 'zero'
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEV_SIGNING_KEY = "novacron-dev-key-change-me"


class ConfigError(ValueError):
    """A setting has a value the service cannot use; the message names the variable."""


def _setting(env: str, default: Any, doc: str, *, minimum: float | None = None,
             secret: bool = False) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc, "minimum": minimum,
                                            "secret": secret})


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class Settings:
    """Settings of a NovaCron Stream process (worker, replay, CLI)."""

    bootstrap_servers: str = _setting(
        "KAFKA_BOOTSTRAP_SERVERS", "",
        "Kafka bootstrap servers (host:port,...). Empty: `novacron run` and the tests start a "
        "local broker of their own and use it.")
    app_id: str = _setting(
        "NOVACRON_APP_ID", "novacron-stream",
        "Faust application id: the consumer group and the prefix of the changelog topics.")
    topic_prefix: str = _setting(
        "NOVACRON_TOPIC_PREFIX", "",
        "Prefix put before every topic name (e.g. `staging.`); lets several deployments or "
        "tests share one cluster.")
    partitions: int = _setting(
        "NOVACRON_PARTITIONS", 8,
        "Partitions of every topic the service creates; input is keyed by vm_id, so workers "
        "can be added up to this count without re-keying.", minimum=1)
    replication_factor: int = _setting(
        "NOVACRON_REPLICATION_FACTOR", 1, "Replication factor of the topics the service creates.",
        minimum=1)
    data_dir: str = _setting(
        "NOVACRON_DATA_DIR", ".novacron/data",
        "Folder of the worker's local table store (rocksdict); one per worker process.")
    security_protocol: str = _setting(
        "NOVACRON_SECURITY_PROTOCOL", "PLAINTEXT",
        "How every Kafka client of the service connects: PLAINTEXT, SSL, SASL_PLAINTEXT or "
        "SASL_SSL.")
    sasl_mechanism: str = _setting(
        "NOVACRON_SASL_MECHANISM", "PLAIN",
        "SASL mechanism (SASL_* protocols): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.")
    sasl_username: str = _setting("NOVACRON_SASL_USERNAME", "", "SASL user name.")
    sasl_password: str = _setting("NOVACRON_SASL_PASSWORD", "", "SASL password.",
                                  secret=True)
    ssl_cafile: str = _setting(
        "NOVACRON_SSL_CAFILE", "",
        "CA bundle that signs the brokers' certificates (SSL, SASL_SSL); empty: the system's.")
    ssl_certfile: str = _setting(
        "NOVACRON_SSL_CERTFILE", "", "Client certificate (PEM) for mutual TLS; optional.")
    ssl_keyfile: str = _setting(
        "NOVACRON_SSL_KEYFILE", "", "Key of the client certificate (PEM); optional.")
    web_host: str = _setting("NOVACRON_WEB_HOST", "127.0.0.1",
                             "Address the worker's web server binds (/metrics, /healthz).")
    web_port: int = _setting("NOVACRON_WEB_PORT", 6066, "Port of the worker's web server.",
                             minimum=1)
    log_level: str = _setting("NOVACRON_LOG_LEVEL", "info",
                              "Log level: debug, info, warning or error.")
    log_format: str = _setting("NOVACRON_LOG_FORMAT", "json",
                               "Log lines as json (one object per line, with vm_id / "
                               "incident_id when known) or text.")
    max_message_bytes: int = _setting(
        "NOVACRON_MAX_MESSAGE_BYTES", 65536,
        "Largest accepted input message; larger ones are dead-lettered unread.", minimum=64)
    max_future_skew_s: float = _setting(
        "NOVACRON_MAX_FUTURE_SKEW_S", 300.0,
        "How far past the worker's clock a metric timestamp may lie before it is "
        "dead-lettered.", minimum=0)
    tumbling_window_s: float = _setting(
        "NOVACRON_TUMBLING_WINDOW_S", 300.0,
        "Width of the tumbling feature window (event time).", minimum=1)
    sliding_window_s: float = _setting(
        "NOVACRON_SLIDING_WINDOW_S", 900.0,
        "Span of the sliding feature window (event time).", minimum=1)
    forecast_horizons_s: tuple[float, ...] = _setting(
        "NOVACRON_FORECAST_HORIZONS_S", (300.0, 900.0, 3600.0),
        "Forecast horizons in seconds, comma separated.", minimum=1)
    forecast_interval_s: float = _setting(
        "NOVACRON_FORECAST_INTERVAL_S", 300.0,
        "Least event time between two forecasts published for one VM.", minimum=0)
    alert_threshold: float = _setting(
        "NOVACRON_ALERT_THRESHOLD", 0.6,
        "Anomaly score (0..1) at or above which a VM sample is anomalous: evidence of "
        "e / (e + 10) for a sample whose chance is 10**-e (0.6: 15 decades). The default keeps "
        "incidents that match no injected anomaly under 0.15 per VM-day on the Bitbrains "
        "traces with every injected class recalled at 90 % or more (bench/anomaly_classes.py, "
        "its budget curve); lower it for more, less sure alerts.", minimum=0)
    resolve_after_events: int = _setting(
        "NOVACRON_RESOLVE_AFTER_EVENTS", 3,
        "Normal samples in a row after which an open incident resolves.", minimum=1)
    cpu_quantile: float = _setting(
        "NOVACRON_CPU_QUANTILE", 0.8,
        "Quantile of a VM's recent cpu use its cpu target covers (with the forecast an hour "
        "ahead and NOVACRON_CPU_MARGIN on top).", minimum=0)
    cpu_margin: float = _setting(
        "NOVACRON_CPU_MARGIN", 0.05,
        "Safety margin over the cpu need (0.05 = 5 %).", minimum=0)
    memory_margin: float = _setting(
        "NOVACRON_MEMORY_MARGIN", 0.15,
        "Safety margin over the memory need (the recent peak or the forecast's 90 % upper "
        "bound, whichever is higher).", minimum=0)
    sizing_window_s: float = _setting(
        "NOVACRON_SIZING_WINDOW_S", 21600.0,
        "How far back the recent use that sizing covers reaches (event time).", minimum=300)
    stabilization_s: float = _setting(
        "NOVACRON_STABILIZATION_S", 7200.0,
        "How long a VM's target must stay low before a scale-down is recommended.", minimum=0)
    cooldown_s: float = _setting(
        "NOVACRON_COOLDOWN_S", 10800.0,
        "Least time after a recommended change before the next scale-down.", minimum=0)
    recommendation_valid_s: float = _setting(
        "NOVACRON_RECOMMENDATION_VALID_S", 900.0,
        "How long a recommendation stays valid (its valid_until).", minimum=1)
    host_cpu_cores: float = _setting(
        "NOVACRON_HOST_CPU_CORES", 32.0,
        "Cores of every host (placement never fills a host beyond it).", minimum=1)
    host_memory_bytes: float = _setting(
        "NOVACRON_HOST_MEMORY_BYTES", 137438953472.0,
        "Memory of every host, bytes (placement never fills a host beyond it).", minimum=1)
    host_report_interval_s: float = _setting(
        "NOVACRON_HOST_REPORT_INTERVAL_S", 60.0,
        "Least event time between two reports of a VM to its host (vm.host-usage).", minimum=0)
    host_report_ttl_s: float = _setting(
        "NOVACRON_HOST_REPORT_TTL_S", 3600.0,
        "A VM not reported to its host for this long no longer counts on it.", minimum=1)
    session_timeout_s: float = _setting(
        "NOVACRON_SESSION_TIMEOUT_S", 30.0,
        "How long the group waits for a silent worker before giving its partitions to the "
        "others (Kafka session timeout; at least 6).", minimum=6)
    standby_replicas: int = _setting(
        "NOVACRON_STANDBY_REPLICAS", 0,
        "Standby copies of each table partition kept by other workers for a faster "
        "failover. 0 (default): a worker taking over a partition reads its changelog; see "
        "the README on failover for why.", minimum=0)
    batch_max_events: int = _setting(
        "NOVACRON_BATCH_MAX_EVENTS", 500,
        "Most events an agent takes from the stream at once.", minimum=1)
    batch_within_s: float = _setting(
        "NOVACRON_BATCH_WITHIN_S", 0.05,
        "Longest an agent waits to fill a batch before it processes what it has.", minimum=0)
    state_flush_s: float = _setting(
        "NOVACRON_STATE_FLUSH_S", 120.0,
        "How long after it first changes a VM's learned state is written to the vm-state "
        "table (0: after every batch); each VM on its own clock, so writes are spread out. A "
        "VM whose batch published an alert, recommendation or drift event is written at "
        "once. A worker killed leaves its unwritten input to be learned again by the next "
        "owner (whose forecasts and host reports for it are then published twice). Encoding "
        "a state is about a millisecond of CPU: at 10-s reporting the default writes each VM "
        "about once per 12 samples (see the README's Throughput and latency).",
        minimum=0)
    store_write_buffer_mb: int = _setting(
        "NOVACRON_STORE_WRITE_BUFFER_MB", 8,
        "RocksDB memtable size of each table partition the worker holds, MiB (two at most per "
        "partition): with the block cache, what bounds a worker's store memory. Faust's "
        "default is 64 MiB x 3.", minimum=1)
    store_block_cache_mb: int = _setting(
        "NOVACRON_STORE_BLOCK_CACHE_MB", 16,
        "RocksDB block cache of each table partition the worker holds, MiB (Faust's default is "
        "2 GiB).", minimum=1)
    checkpoint_interval_s: float = _setting(
        "NOVACRON_CHECKPOINT_INTERVAL_S", 3600.0,
        "How often the leader worker takes a model checkpoint (a version every worker "
        "snapshots its VMs' learned state into; `novacron models`). 0: only on request.",
        minimum=0)
    checkpoints_kept: int = _setting(
        "NOVACRON_CHECKPOINTS_KEPT", 24,
        "Model versions whose snapshots are kept: a checkpoint deletes the snapshots of the "
        "version this many before it (its catalog entry stays).", minimum=1)
    idle_vm_expiry_s: float = _setting(
        "NOVACRON_IDLE_VM_EXPIRY_S", 86400.0,
        "A VM that sent nothing for this long (wall clock) is forgotten: its state is "
        "deleted from the vm-state table. 0: never.", minimum=0)
    state_signing_key: str = _setting(
        "NOVACRON_STATE_SIGNING_KEY", DEV_SIGNING_KEY,
        "Secret that signs the learned state written to changelog tables; state with a bad "
        "signature is never loaded. Set it in production (a warning is logged otherwise).",
        secret=True)

    def __post_init__(self) -> None:
        if self.log_level.lower() not in {"debug", "info", "warning", "error"}:
            raise ConfigError(
                f"NOVACRON_LOG_LEVEL: expected debug, info, warning or error, got "
                f"{self.log_level!r}")
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(f"NOVACRON_SECURITY_PROTOCOL: expected one of "
                              f"{', '.join(SECURITY_PROTOCOLS)}, got {self.security_protocol!r}")
        if self.security_protocol.startswith("SASL_"):
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise ConfigError(f"NOVACRON_SASL_MECHANISM: expected one of "
                                  f"{', '.join(SASL_MECHANISMS)}, got {self.sasl_mechanism!r}")
            if not self.sasl_username or not self.sasl_password:
                raise ConfigError(f"{self.security_protocol} needs NOVACRON_SASL_USERNAME and "
                                  "NOVACRON_SASL_PASSWORD")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                raise ConfigError(f"NOVACRON_{name.upper()}: no such file {path!r}")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ConfigError("NOVACRON_SSL_CERTFILE and NOVACRON_SSL_KEYFILE go together")
        if self.log_format not in ("json", "text"):
            raise ConfigError(f"NOVACRON_LOG_FORMAT: expected json or text, got "
                              f"{self.log_format!r}")
        if not 0 < self.cpu_quantile <= 1:
            raise ConfigError("NOVACRON_CPU_QUANTILE: expected a number in (0, 1]")
        if self.alert_threshold >= 1:
            raise ConfigError("NOVACRON_ALERT_THRESHOLD: expected a number below 1")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every field from ``env`` (default: ``os.environ``); ``overrides`` win."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = f.metadata["env"]
            if f.name in overrides:
                values[f.name] = overrides[f.name]
            elif name in env and env[name].strip() != "":
                values[f.name] = _parse(f, env[name].strip())
        return cls(**values)

    def kafka_client_options(self) -> dict[str, Any]:
        """Connection options for every aiokafka client (producer, consumer, admin)."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile or None, certfile=self.ssl_certfile or None,
                keyfile=self.ssl_keyfile or None)
        if self.security_protocol.startswith("SASL_"):
            options.update(sasl_mechanism=self.sasl_mechanism,
                           sasl_plain_username=self.sasl_username,
                           sasl_plain_password=self.sasl_password)
        return options

    def secrets(self) -> list[str]:
        """The values of every secret setting (for log redaction)."""
        return [str(getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.metadata.get("secret")]

    def topic(self, name: str) -> str:
        """The full topic name for a base name such as ``vm.metrics``."""
        return f"{self.topic_prefix}{name}"

    @property
    def signing_key_is_default(self) -> bool:
        return self.state_signing_key == DEV_SIGNING_KEY


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    name = f.metadata["env"]
    kind = type(f.default)
    minimum = f.metadata["minimum"]
    try:
        if kind is int:
            value: Any = int(raw)
        elif kind is float:
            value = float(raw)
        elif kind is tuple:
            value = tuple(sorted(float(part) for part in raw.split(",") if part.strip()))
            if not value:
                raise ValueError
        else:
            return raw
    except ValueError:
        what = {int: "an integer", float: "a number", tuple: "comma separated numbers"}[kind]
        raise ConfigError(f"{name}: expected {what}, got {raw!r}") from None
    values = value if isinstance(value, tuple) else (value,)
    if minimum is not None and any(v < minimum for v in values):
        raise ConfigError(f"{name}: must be at least {minimum:g}, got {raw!r}")
    if any(v != v or v in (float("inf"), float("-inf")) for v in values):
        raise ConfigError(f"{name}: must be a finite number, got {raw!r}")
    return value


def describe() -> list[dict[str, str]]:
    """One row per setting (variable, default, description), for docs and ``--help``."""
    rows = []
    for f in dataclasses.fields(Settings):
        default = f.default
        if isinstance(default, tuple):
            default = ",".join(f"{v:g}" for v in default)
        shown = "(dev key)" if f.metadata["secret"] else str(default)
        rows.append({"env": f.metadata["env"], "default": shown, "doc": f.metadata["doc"]})
    return rows


def settings_markdown() -> str:
    """The settings table as Markdown (the body of docs/settings.md)."""
    lines = [
        "# Settings",
        "",
        "Every process reads these environment variables once, at start, into one frozen",
        "`streams.settings.Settings`. A bad value stops the process with one line naming the",
        "variable. Generated from the code by `novacron settings --markdown`.",
        "",
        "| variable | default | meaning |",
        "| --- | --- | --- |",
    ]
    for row in describe():
        default = f"`{row['default']}`" if row["default"] else "(empty)"
        lines.append(f"| `{row['env']}` | {default} | {row['doc']} |")
    return "\n".join(lines) + "\n"
