"""A real Apache Kafka 4.x broker that the project provisions and starts itself.

The jars come from Maven Central through ``deploy/kafka/pom.xml`` (``mvn
dependency:copy-dependencies``) into a git-ignored cache, once. :class:`LocalKafka` formats KRaft
storage in a fresh data dir, starts one combined broker+controller on free 127.0.0.1 ports,
waits until it answers metadata requests, logs to a file and stops it cleanly (SIGTERM, then
SIGKILL after a timeout). ``KAFKA_BOOTSTRAP_SERVERS`` naming a cluster bypasses all of it.

Used by ``novacron run`` / ``novacron broker`` and by the integration-test fixtures::

    with LocalKafka() as kafka:
        print(kafka.bootstrap_servers)
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parents[1]
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
LOG4J_CONFIG = REPO_ROOT / "deploy" / "kafka" / "log4j2.xml"
DEFAULT_CACHE_DIR = REPO_ROOT / ".cache" / "kafka"

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The local broker could not be provisioned, started or reached."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_jars(cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """Fetch Kafka and its runtime dependencies into ``cache_dir/libs`` unless already there.

    Re-fetches when the pom changes. Safe to call from several processes at once.
    """
    cache_dir = Path(cache_dir)
    libs = cache_dir / "libs"
    marker = libs / ".complete"
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    if marker.exists() and marker.read_text() == digest:
        return libs
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text() == digest:
            return libs
        if shutil.which("mvn") is None:
            raise BrokerError("Maven (mvn) is not on PATH: install Maven 3 and Java 17+ to "
                              "provision the local Kafka broker")
        if libs.exists():
            shutil.rmtree(libs)
        log.info("fetching Apache Kafka jars with Maven into %s (once)", libs)
        cmd = ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
               "-DincludeScope=runtime", f"-DoutputDirectory={libs}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BrokerError("fetching Kafka with Maven failed: "
                              + (proc.stdout + proc.stderr).strip()[-2000:])
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise BrokerError(f"Maven finished but no kafka_2.13 jar is in {libs}")
        marker.write_text(digest)
    return libs


def _server_properties(port: int, controller_port: int, data_dir: Path,
                       sasl_port: int | None = None,
                       sasl_users: dict[str, str] | None = None) -> str:
    listeners = [f"PLAINTEXT://127.0.0.1:{port}"]
    sasl: list[str] = []
    if sasl_port is not None and sasl_users:
        listeners.append(f"SASL_PLAINTEXT://127.0.0.1:{sasl_port}")
        users = " ".join(f'user_{u}="{p}"' for u, p in sasl_users.items())
        sasl = [
            "sasl.enabled.mechanisms=PLAIN",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config="
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};",
        ]
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"listeners={','.join(listeners)},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners={','.join(listeners)}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,"
        "CONTROLLER:PLAINTEXT",
        *sasl,
        f"controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}",
        f"log.dirs={data_dir / 'logs'}",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=8",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false",
        "num.partitions=1",
        "",
    ])


async def _describe_cluster(bootstrap: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await admin.start()
        await admin.describe_cluster()
    finally:
        await admin.close()


def answers_metadata(bootstrap: str) -> bool:
    """True when the cluster answers a metadata request (run in its own thread and loop)."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False  # not listening yet: skip the client and its connection-error logs
    outcome: list[bool] = []

    def probe() -> None:
        try:
            asyncio.run(_describe_cluster(bootstrap))
            outcome.append(True)
        except Exception:
            outcome.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout=10)
    return bool(outcome and outcome[0])


class LocalKafka:
    """One KRaft broker+controller node on 127.0.0.1, owned by this process."""

    def __init__(self, *, cache_dir: Path = DEFAULT_CACHE_DIR, data_dir: Path | None = None,
                 port: int | None = None, heap: str = "768m",
                 sasl_users: dict[str, str] | None = None) -> None:
        self.cache_dir = Path(cache_dir)
        self._own_data_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir else Path(
            tempfile.mkdtemp(prefix="novacron-kafka-"))
        self.port = port or free_port()
        self.controller_port = free_port()
        #: users of an extra SASL_PLAINTEXT (mechanism PLAIN) listener, for security tests
        self.sasl_users = dict(sasl_users or {})
        self.sasl_port = free_port() if self.sasl_users else None
        self.heap = heap
        self.log_path = self.data_dir / "broker.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap_servers(self) -> str | None:
        """The SASL_PLAINTEXT listener (when ``sasl_users`` were given)."""
        return f"127.0.0.1:{self.sasl_port}" if self.sasl_port else None

    def _java(self, libs: Path, *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise BrokerError("java is not on PATH: install Java 17+ to run the local broker")
        return [java, f"-Xmx{self.heap}", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
                f"-Dkafka.logs.dir={self.data_dir}", "-cp", f"{libs}/*", *args]

    def start(self, timeout_s: float = 90.0) -> LocalKafka:
        """Provision (if needed), format, start and wait until the broker serves."""
        libs = ensure_jars(self.cache_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self.data_dir / "server.properties"
        props.write_text(_server_properties(self.port, self.controller_port, self.data_dir,
                                            self.sasl_port, self.sasl_users))
        if not (self.data_dir / "logs" / "meta.properties").exists():  # a restart keeps it
            fmt = subprocess.run(
                self._java(libs, "kafka.tools.StorageTool", "format", "--standalone",
                           "--cluster-id", _cluster_id(), "--config", str(props)),
                capture_output=True, text=True, check=False)
            if fmt.returncode != 0:
                raise BrokerError("formatting KRaft storage failed: "
                                  + (fmt.stdout + fmt.stderr).strip()[-2000:])
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                self._java(libs, "kafka.Kafka", str(props)), stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"the broker exited with code {self.process.returncode}; "
                                  f"see {self.log_path}:\n{self._log_tail()}")
            if answers_metadata(self.bootstrap_servers):
                log.info("local Kafka broker ready at %s (log: %s)", self.bootstrap_servers,
                         self.log_path)
                return self
            time.sleep(0.5)
        self.stop()
        raise BrokerError(f"the broker did not answer within {timeout_s:.0f} s; see "
                          f"{self.log_path}:\n{self._log_tail()}")

    def _log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; removes a data dir it created."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if proc is not None and self._own_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        atexit.unregister(self.stop)

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _cluster_id() -> str:
    """A random KRaft cluster id (base64url of 16 random bytes, as StorageTool makes). Like
    Kafka's own ``Uuid.randomUuid``, never one starting with "-": the storage tool would read
    it as an option (one id in 64 did, failing the broker's start)."""
    import base64

    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid
