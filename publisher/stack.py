"""The local stack: Apache Kafka (KRaft, one node) and Apicurio Registry on loopback, no Docker.

Both come from Maven Central the first time (``mvn dependency:copy-dependencies`` for the broker,
``mvn dependency:copy`` for the registry's ``tar.gz:all``) into ``deploy/local/cache/``; their data,
logs and the pids we started live in ``deploy/local/state/``. ``down`` only stops processes whose
command line carries this stack's marker, so it never touches another Java process.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from publisher.errors import StackError

KAFKA_VERSION = "4.1.1"
# 3.3.3 is the newest Apicurio 3.x served; it needs Java 21+, found beside the default JDK.
APICURIO_VERSION = "3.3.3"
APICURIO_MIN_JAVA = 21
KAFKA_HEAP = "-Xmx512m"
REGISTRY_HEAP = "-Xmx384m"
START_TIMEOUT_S = 150.0
STOP_TIMEOUT_S = 30.0
CCOMPAT_PATH = "/apis/ccompat/v7"


@dataclass(frozen=True)
class StackConfig:
    """Where the stack lives and which loopback ports it uses (env ``CDR_STACK_*``)."""

    home: Path
    kafka_port: int = 19092
    controller_port: int = 19093
    registry_port: int = 18081
    registry_management_port: int = 19000
    host: str = "127.0.0.1"
    state_dir: Path | None = None
    """Where data, logs and pids go (default ``home/state``); a second stack sharing the
    downloads, e.g. a private broker a test may stop, sets its own."""

    @classmethod
    def from_env(cls, home: Path | None = None) -> StackConfig:
        def port(name: str, default: int) -> int:
            raw = os.environ.get(name)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise StackError(f"{name} must be a port number, got {raw!r}") from None
            if not 1 <= value <= 65535:
                raise StackError(f"{name} must be between 1 and 65535, got {value}")
            return value

        env_home = os.environ.get("CDR_STACK_HOME")
        return cls(
            home=Path(env_home) if env_home else (home or default_home()),
            kafka_port=port("CDR_STACK_KAFKA_PORT", 19092),
            controller_port=port("CDR_STACK_CONTROLLER_PORT", 19093),
            registry_port=port("CDR_STACK_REGISTRY_PORT", 18081),
            registry_management_port=port("CDR_STACK_REGISTRY_MANAGEMENT_PORT", 19000),
        )

    @property
    def cache(self) -> Path:
        return self.home / "cache"

    @property
    def state(self) -> Path:
        return self.state_dir or self.home / "state"

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def registry_url(self) -> str:
        return f"http://{self.host}:{self.registry_port}{CCOMPAT_PATH}"

    @property
    def marker(self) -> str:
        """A JVM system property that identifies processes of this stack in ``ps``."""
        return f"-Dcdr.publisher.stack={self.state}"


def default_home() -> Path:
    """``deploy/local`` of the source checkout this package runs from, else the current folder's."""
    checkout = Path(__file__).resolve().parent.parent / "deploy" / "local"
    if (checkout / "pom.xml").exists():
        return checkout
    return Path.cwd() / "deploy" / "local"


# --- Java and downloads ---------------------------------------------------------------------


def java_major(java_home: Path) -> int | None:
    release = java_home / "release"
    if not release.exists():
        return None
    for line in release.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("JAVA_VERSION="):
            version = line.split("=", 1)[1].strip().strip('"')
            head = version.split(".", 1)[0]
            return int(head) if head.isdigit() else None
    return None


def find_java(min_major: int) -> Path:
    """The ``java`` of a JDK at least ``min_major``: JAVA_HOME, the JVM directory, then PATH."""
    candidates: list[Path] = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]))
    jvm_dir = Path("/usr/lib/jvm")
    if jvm_dir.is_dir():
        candidates.extend(sorted(jvm_dir.iterdir(), reverse=True))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(Path(on_path).resolve().parent.parent)
    best: tuple[int, Path] | None = None
    for home in candidates:
        major = java_major(home)
        binary = home / "bin" / "java"
        usable = major is not None and major >= min_major and binary.exists()
        if usable and major is not None and (best is None or major > best[0]):
            best = (major, binary)
    if best is None:
        raise StackError(
            f"no Java {min_major}+ found (looked at JAVA_HOME, /usr/lib/jvm and PATH); "
            f"install a JDK {min_major} or newer"
        )
    return best[1]


def _run_maven(args: list[str], what: str) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            "Maven (mvn) is not on PATH; it is needed once to fetch Kafka and Apicurio"
        )
    proc = subprocess.run([mvn, "-B", "-q", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "ERROR" in ln]
        reason = lines[0].strip() if lines else f"mvn exited {proc.returncode}"
        raise StackError(f"could not download {what} from Maven Central: {reason}")


def kafka_libs(config: StackConfig) -> Path:
    libs = config.cache / f"kafka-{KAFKA_VERSION}" / "libs"
    if (libs / ".complete").exists():
        return libs
    libs.mkdir(parents=True, exist_ok=True)
    _run_maven(
        [
            "-f",
            str(config.home / "pom.xml"),
            f"-Dkafka.version={KAFKA_VERSION}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ],
        f"Apache Kafka {KAFKA_VERSION}",
    )
    (libs / ".complete").touch()
    return libs


def registry_app(config: StackConfig) -> Path:
    root = config.cache / f"apicurio-{APICURIO_VERSION}"
    if (root / ".complete").exists():
        return _quarkus_jar(root)
    root.mkdir(parents=True, exist_ok=True)
    _run_maven(
        [
            "dependency:copy",
            f"-Dartifact=io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all",
            f"-DoutputDirectory={root}",
        ],
        f"Apicurio Registry {APICURIO_VERSION}",
    )
    archive = root / f"apicurio-registry-app-{APICURIO_VERSION}-all.tar.gz"
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    archive.unlink()
    (root / ".complete").touch()
    return _quarkus_jar(root)


def _quarkus_jar(root: Path) -> Path:
    # 3.3+ put quarkus-run.jar at the archive's root; 3.1.5-3.2.x under quarkus-app/.
    for candidate in (root / "quarkus-run.jar", root / "quarkus-app" / "quarkus-run.jar"):
        if candidate.exists():
            return candidate
    raise StackError(f"quarkus-run.jar not found under {root}; delete that folder and retry")


# --- processes -------------------------------------------------------------------------------


def _pid_alive_with_marker(pid: int, marker: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return marker.encode() in cmdline


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _pids_file(config: StackConfig) -> Path:
    return config.state / "pids.json"


def _read_pids(config: StackConfig) -> dict[str, int]:
    try:
        data = json.loads(_pids_file(config).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: int(v) for k, v in data.items() if isinstance(v, int)}


def _write_pids(config: StackConfig, pids: dict[str, int]) -> None:
    config.state.mkdir(parents=True, exist_ok=True)
    tmp = _pids_file(config).with_suffix(".tmp")
    tmp.write_text(json.dumps(pids), encoding="utf-8")
    tmp.replace(_pids_file(config))


def running(config: StackConfig) -> dict[str, int]:
    """The services of this stack whose process is alive, with their pids."""
    return {
        name: pid
        for name, pid in _read_pids(config).items()
        if _pid_alive_with_marker(pid, config.marker)
    }


# Children started by this process, kept so they are reaped on ``down`` instead of lingering
# as zombies (and so Python does not warn about a Popen dropped while its child runs).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _spawn(
    argv: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,  # the stack outlives the CLI that started it
        )
    _CHILDREN[proc.pid] = proc
    return proc.pid


def _server_properties(config: StackConfig, data_dir: Path) -> str:
    h = config.host
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers={h}:{config.controller_port}",
            f"listeners=PLAINTEXT://{h}:{config.kafka_port},CONTROLLER://{h}:{config.controller_port}",
            f"advertised.listeners=PLAINTEXT://{h}:{config.kafka_port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={data_dir}",
            "num.partitions=1",
            # One node: internal topics must not ask for replicas that cannot exist, or
            # transactions and consumer groups hang.
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "log.cleaner.enable=true",
            # Compact soon after a segment rolls, so the state topic stays small in tests.
            "log.cleaner.backoff.ms=5000",
            "",
        ]
    )


def _start_kafka(config: StackConfig) -> int:
    libs = kafka_libs(config)
    java = find_java(17)
    kstate = config.state / "kafka"
    data_dir = kstate / "data"
    props = kstate / "server.properties"
    kstate.mkdir(parents=True, exist_ok=True)
    props.write_text(_server_properties(config, data_dir), encoding="utf-8")
    classpath = f"{libs}/*"
    if not (data_dir / "meta.properties").exists():
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        proc = subprocess.run(
            [
                str(java),
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                # The "=" form: a random id may start with "-" and pass for an option.
                f"--cluster-id={cluster_id}",
                "-c",
                str(props),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise StackError(
                f"kafka storage format failed: {proc.stderr.strip() or proc.stdout.strip()}"
            )
    argv = [
        str(java),
        config.marker,
        KAFKA_HEAP,
        "-Xms128m",
        "-XX:+UseG1GC",
        f"-Dkafka.logs.dir={kstate}",
        f"-Dlog4j2.configurationFile={config.home / 'log4j2.properties'}",
        "-cp",
        classpath,
        "kafka.Kafka",
        str(props),
    ]
    return _spawn(argv, kstate / "stdout.log")


def _start_registry(config: StackConfig) -> int:
    jar = registry_app(config)
    java = find_java(APICURIO_MIN_JAVA)
    rstate = config.state / "registry"
    rstate.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "QUARKUS_HTTP_HOST": config.host,
            "QUARKUS_HTTP_PORT": str(config.registry_port),
            # From 3.2 a management interface listens too; keep it on loopback and off 9000.
            "QUARKUS_MANAGEMENT_HOST": config.host,
            "QUARKUS_MANAGEMENT_PORT": str(config.registry_management_port),
        }
    )
    argv = [str(java), config.marker, REGISTRY_HEAP, "-jar", str(jar)]
    return _spawn(argv, rstate / "stdout.log", env=env, cwd=jar.parent)


# --- readiness -------------------------------------------------------------------------------


def kafka_ready(config: StackConfig, timeout: float = 2.0) -> bool:
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415 - keep `stack status` light

    if not _port_in_use(config.host, config.kafka_port):
        return False
    admin = AdminClient({"bootstrap.servers": config.bootstrap_servers, "log_level": 0})
    try:
        return bool(admin.list_topics(timeout=timeout).brokers)
    except Exception:  # noqa: BLE001 - any failure here means "not ready yet"
        return False


def registry_ready(config: StackConfig, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{config.registry_url}/subjects", timeout=timeout) as reply:  # noqa: S310 - our own loopback URL
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _alive(pid: int, config: StackConfig) -> bool:
    """Our own child: ask the OS whether it exited (the java launcher may re-exec itself, and
    its command line can look foreign for a moment). Otherwise: look for the marker."""
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    return _pid_alive_with_marker(pid, config.marker)


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def _wait(config: StackConfig, pids: dict[str, int]) -> None:
    checks = {"kafka": kafka_ready, "registry": registry_ready}
    logs = {
        "kafka": config.state / "kafka" / "kafka.log",
        "registry": config.state / "registry" / "stdout.log",
    }
    pending = set(pids)
    deadline = time.monotonic() + START_TIMEOUT_S
    while pending:
        for name in sorted(pending):
            if checks[name](config):
                pending.discard(name)
            elif not _alive(pids[name], config):
                raise StackError(f"{name} exited during start-up: {_log_tail(logs[name])}")
        if pending and time.monotonic() > deadline:
            raise StackError(
                f"{', '.join(sorted(pending))} did not answer within {START_TIMEOUT_S:.0f}s; "
                f"see {config.state}"
            )
        if pending:
            time.sleep(0.5)


# --- commands --------------------------------------------------------------------------------


SERVICES = ("kafka", "registry")


def up(config: StackConfig, services: tuple[str, ...] = SERVICES) -> dict[str, str]:
    """Start what is not running yet, wait until all answer, return their addresses."""
    config.state.mkdir(parents=True, exist_ok=True)
    pids = {name: pid for name, pid in running(config).items() if name in services}
    ports = {
        "kafka": [config.kafka_port, config.controller_port],
        "registry": [config.registry_port, config.registry_management_port],
    }
    starters = {"kafka": _start_kafka, "registry": _start_registry}
    started: dict[str, int] = {}
    for name in services:
        if name in pids:
            continue
        for port in ports[name]:
            if _port_in_use(config.host, port):
                raise StackError(
                    f"port {port} for {name} is taken by another process; "
                    f"choose others with CDR_STACK_*_PORT"
                )
        started[name] = starters[name](config)
        pids[name] = started[name]
        _write_pids(config, {**running(config), **pids})
    _wait(config, pids)
    return addresses(config)


def addresses(config: StackConfig) -> dict[str, str]:
    return {"kafka": config.bootstrap_servers, "registry": config.registry_url}


def status(config: StackConfig) -> dict[str, bool]:
    pids = running(config)
    return {
        "kafka": "kafka" in pids and kafka_ready(config),
        "registry": "registry" in pids and registry_ready(config),
    }


def down(
    config: StackConfig, *, purge: bool = False, services: tuple[str, ...] = SERVICES
) -> list[str]:
    """Stop the processes this stack started (and only those); ``purge`` also deletes the data."""
    alive = running(config)
    pids = {name: pid for name, pid in alive.items() if name in services}
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for pid in pids.values():
        child = _CHILDREN.pop(pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=STOP_TIMEOUT_S)
    while any(_pid_alive_with_marker(p, config.marker) for p in pids.values()):
        if time.monotonic() > deadline:
            for pid in pids.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.2)
    _write_pids(config, {name: pid for name, pid in alive.items() if name not in services})
    if purge and config.state.exists():
        shutil.rmtree(config.state)
    return sorted(pids)
