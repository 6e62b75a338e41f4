"""docker-compose.yml and the files it mounts agree with the service's settings and CLI.

Nothing here runs Docker: the compose file, the Prometheus config and the Grafana data source
are parsed and checked against ``streams.settings`` (every variable set is a real setting, with
a value it accepts) and against the ``novacron`` subcommands.
"""

from __future__ import annotations

import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.settings import Settings, describe

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = "deploy/Dockerfile"
SERVICES = {"kafka", "topics", "worker", "replay", "prometheus", "grafana"}
NOVACRON_SERVICES = ("topics", "worker", "replay")
SUBCOMMANDS = {"worker", "replay", "topics"}
KNOWN_ENV = {row["env"] for row in describe()}


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def environment(name: str) -> dict[str, str]:
    env = service(name).get("environment", {})
    if isinstance(env, list):  # the KEY=VALUE list form
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def command(name: str) -> list[str]:
    cmd = service(name)["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def mounts(name: str) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) of every volume of a service (short or long syntax)."""
    out = []
    for volume in service(name).get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            out.append((source, target, "ro" in (mode[0].split(",") if mode else [])))
        else:
            out.append((volume.get("source", ""), volume["target"],
                        bool(volume.get("read_only", False))))
    return out


def bind_mount_file(name: str, target: str) -> Path:
    sources = [src for src, tgt, _ in mounts(name) if tgt == target]
    assert len(sources) == 1, f"{name} mounts exactly one thing at {target}"
    return (ROOT / sources[0]).resolve()


def without_substitution(value: str) -> str:
    """A stand-in for a ``${VAR...}`` value that compose fills in from the environment."""
    return "substituted-by-compose" if value.startswith("${") else value


def test_services_exist() -> None:
    assert set(compose()["services"]) >= SERVICES


def test_shared_env_anchor_is_used_by_every_novacron_service() -> None:
    shared = {k: str(v) for k, v in compose()["x-novacron-env"].items()}
    assert shared["KAFKA_BOOTSTRAP_SERVERS"]
    for name in NOVACRON_SERVICES:
        env = environment(name)
        assert {k: env[k] for k in shared} == shared, f"{name} does not merge x-novacron-env"


def test_novacron_services_run_the_project_image() -> None:
    for name in NOVACRON_SERVICES:
        build = service(name)["build"]
        assert build["context"] == "."
        assert build["dockerfile"] == DOCKERFILE
    assert len({service(name)["image"] for name in NOVACRON_SERVICES}) == 1


@pytest.mark.parametrize("name", NOVACRON_SERVICES)
def test_every_variable_is_a_known_setting_with_a_valid_value(name: str) -> None:
    env = environment(name)
    ours = {k: v for k, v in env.items() if k.startswith(("NOVACRON_", "KAFKA_"))}
    unknown = sorted(set(ours) - KNOWN_ENV)
    assert unknown == [], f"{name} sets variables that streams.settings does not read"
    # Every value is one the service accepts (a bad one would stop it at start).
    Settings.from_env({k: without_substitution(v) for k, v in ours.items()})


def test_shared_env_names_are_known_settings() -> None:
    assert set(compose()["x-novacron-env"]) <= KNOWN_ENV


def test_worker_settings() -> None:
    env = environment("worker")
    settings = Settings.from_env({k: without_substitution(v) for k, v in env.items()})
    assert settings.web_host == "0.0.0.0"
    assert settings.data_dir == "/data"
    assert settings.partitions == 8
    assert settings.bootstrap_servers == "kafka:9092"
    assert ("worker-data", "/data", False) in mounts("worker")
    assert f"{settings.web_port}:{settings.web_port}" in [str(p) for p in service("worker")
                                                          ["ports"]]
    # Compose refuses to start without a signing key instead of running with the dev key.
    assert re.fullmatch(r"\$\{NOVACRON_STATE_SIGNING_KEY:\?[^}]+\}",
                        env["NOVACRON_STATE_SIGNING_KEY"])
    depends = service("worker")["depends_on"]
    assert depends["kafka"]["condition"] == "service_healthy"
    assert depends["topics"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", NOVACRON_SERVICES)
def test_commands_are_novacron_subcommands(name: str) -> None:
    cmd = command(name)
    assert cmd[0] == "novacron"
    assert cmd[1] in SUBCOMMANDS
    assert cmd[1] == {"topics": "topics", "worker": "worker", "replay": "replay"}[name]


def test_topics_is_one_shot_create() -> None:
    assert command("topics") == ["novacron", "topics", "create"]
    assert str(service("topics").get("restart", "no")) == "no"


def test_replay_reads_the_shared_traces_read_only() -> None:
    cmd = command("replay")
    data = cmd[cmd.index("--data") + 1]
    assert float(cmd[cmd.index("--speedup") + 1]) > 0
    sources = [(src, tgt) for src, tgt, ro in mounts("replay") if ro]
    assert ("../shared/data", "/data") in sources
    assert data.startswith("/data/")


@pytest.mark.parametrize("name", NOVACRON_SERVICES)
def test_commands_parse_with_the_cli(name: str) -> None:
    cli = pytest.importorskip("streams.cli")
    args = cli.build_parser().parse_args(command(name)[1:])
    assert args.command == command(name)[1]


def test_dockerfile() -> None:
    lines = [line for line in (ROOT / DOCKERFILE).read_text(encoding="utf-8").splitlines()
             if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))  # backslash continuations
    instructions = [line.split(None, 1) for line in joined.splitlines() if line.strip()]
    keywords = [parts[0].upper() for parts in instructions]
    assert instructions[0] == ["FROM", "python:3.11-slim"]
    assert "ENTRYPOINT" not in keywords
    assert ["CMD", '["novacron", "worker"]'] in instructions
    assert any(kw == "RUN" and "pip install ." in rest for kw, rest in instructions)


def test_prometheus_scrapes_the_worker() -> None:
    config_path = bind_mount_file("prometheus", "/etc/prometheus/prometheus.yml")
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    port = Settings.from_env(environment("worker")
                             | {"NOVACRON_STATE_SIGNING_KEY": "x"}).web_port
    scraped = [
        (job.get("metrics_path", "/metrics"), target)
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    assert ("/metrics", f"worker:{port}") in scraped


def test_grafana_provisions_the_prometheus_data_source() -> None:
    provisioning = bind_mount_file("grafana", "/etc/grafana/provisioning")
    files = sorted((provisioning / "datasources").glob("*.yml"))
    assert files
    sources = [ds for f in files
               for ds in yaml.safe_load(f.read_text(encoding="utf-8"))["datasources"]]
    prometheus = [ds for ds in sources if ds["type"] == "prometheus"]
    assert [ds["url"] for ds in prometheus] == ["http://prometheus:9090"]
    assert service("prometheus")["image"].startswith("prom/prometheus")
    assert service("grafana")["image"].startswith("grafana/grafana")


def test_kafka_is_a_single_kraft_node_of_kafka_4() -> None:
    kafka = service("kafka")
    assert re.fullmatch(r"apache/kafka:4\.\d+(\.\d+)?", kafka["image"])
    env = {k: str(v) for k, v in kafka["environment"].items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "ZOOKEEPER" not in " ".join(env)
    listeners = set(env["KAFKA_LISTENERS"].split(","))
    assert {"PLAINTEXT://:9092", "CONTROLLER://:9093"} <= listeners
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    for name, value in env.items():
        if name.endswith(("REPLICATION_FACTOR", "MIN_ISR")):
            assert value == "1", name
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    health = " ".join(kafka["healthcheck"]["test"])
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh" in health
    # The workers reach the broker at the address it advertises.
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].removeprefix("PLAINTEXT://")
    assert compose()["x-novacron-env"]["KAFKA_BOOTSTRAP_SERVERS"] == advertised


def test_kafka_image_matches_the_local_broker_version() -> None:
    pom = ROOT / "deploy" / "kafka" / "pom.xml"
    if not pom.is_file():
        pytest.skip("no deploy/kafka/pom.xml")
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text("utf-8"))
    assert match, "pom.xml names kafka.version"
    assert service("kafka")["image"] == f"apache/kafka:{match.group(1)}"


def test_grafana_provisions_a_dashboard_of_the_workers_metrics() -> None:
    """The dashboard is loaded from the mounted folder, reads the provisioned data source,
    and every metric it queries is one the worker serves."""
    import json
    import re

    from prometheus_client import CollectorRegistry

    from streams.observability import WorkerMetrics

    provisioning = bind_mount_file("grafana", "/etc/grafana/provisioning")
    (provider_file,) = sorted((provisioning / "dashboards").glob("*.yml"))
    (provider,) = yaml.safe_load(provider_file.read_text(encoding="utf-8"))["providers"]
    folder = bind_mount_file("grafana", provider["options"]["path"])
    (dashboard_file,) = sorted(folder.glob("*.json"))
    dashboard = json.loads(dashboard_file.read_text(encoding="utf-8"))
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
                "gauge": ("",)}
    served = {family.name + suffix
              for family in WorkerMetrics(CollectorRegistry()).registry.collect()
              for suffix in suffixes[family.type]}
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(dashboard["panels"]) >= 10
    for expr in exprs:
        for name in re.findall(r"novacron_[a-z_]+", expr):
            assert name in served, f"{name} in {expr!r} is not a worker metric"
    queried = {n for e in exprs for n in re.findall(r"novacron_[a-z_]+", e)}
    for wanted in ("novacron_consumer_lag_messages", "novacron_end_to_end_seconds_bucket",
                   "novacron_incidents_total", "novacron_forecast_abs_error_total",
                   "novacron_drift_events_total", "novacron_recommendations_total",
                   "novacron_vm_state_bytes_bucket", "novacron_batch_processing_seconds_bucket"):
        assert wanted in queried, wanted
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "prometheus"


def test_local_broker_cluster_ids_never_look_like_an_option() -> None:
    """The storage tool reads an id starting with "-" as an option and refuses to format."""
    from streams.broker import _cluster_id

    ids = [_cluster_id() for _ in range(2000)]
    assert not any(i.startswith("-") for i in ids)
    assert all(len(i) == 22 for i in ids) and len(set(ids)) == len(ids)
