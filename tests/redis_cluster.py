"""A real Redis Cluster on loopback, for the tests: three primaries with one replica each,
each a redis-server process this module started, stopped by its PID.

What the fault tests need is here too: which node serves a slot, the replica of a primary,
and killing or restarting one node (it rejoins with its cluster config file, data lost).
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

PRIMARIES = 3
REPLICAS_PER_PRIMARY = 1
# The cluster bus listens on port + 10000: both must be free, and below 65536.
_PORTS = range(20000, 30000)
_NODE_TIMEOUT_MS = 2000  # how long a silent primary takes to be declared failed


class ClusterError(RuntimeError):
    pass


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    for port in random.sample(_PORTS, len(_PORTS)):
        if _bindable(port) and _bindable(port + 10000):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise ClusterError("no free port pairs for a Redis Cluster")


@dataclass
class Node:
    """One redis-server of the cluster. `process` is None while it is down."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def client(self, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def start(self) -> None:
        if self.process is not None:
            raise ClusterError(f"{self.name} already runs")
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The config file persists the node's identity: a restarted node rejoins the cluster.
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(self.workdir / "nodes.conf"),
                "--cluster-node-timeout",
                str(_NODE_TIMEOUT_MS),
                # A replica's first sync at once, not after Redis's default 5 s wait.
                "--repl-diskless-sync-delay",
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--logfile",
                str(self.workdir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ClusterError(f"redis-server on {self.name} exited: {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise ClusterError(f"redis-server on {self.name} did not start")

    def kill(self) -> None:
        """SIGKILL, as a crash: no goodbye to the cluster."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self.resume()  # a stopped process would not act on SIGTERM
        self._signal(signal.SIGTERM)

    def pause(self) -> None:
        """SIGSTOP: the node stalls, its sockets open and silent."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 20) -> str:
        log = self.workdir / "redis.log"
        return "\n".join(log.read_text().splitlines()[-lines:]) if log.exists() else ""


@dataclass(frozen=True)
class _Row:
    node_id: str
    address: str
    flags: set[str]
    primary_id: str  # "-" for a primary
    slots: tuple[str, ...]  # "first-last"

    @property
    def serving(self) -> bool:
        return "master" in self.flags and "fail" not in self.flags and bool(self.slots)


@dataclass
class LocalCluster:
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mfa-cluster-")))
    nodes: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        """MFA_REDIS_URL for the service: every node a startup node."""
        return "redis+cluster://" + ",".join(node.name for node in self.nodes)

    def start(self) -> None:
        count = PRIMARIES * (1 + REPLICAS_PER_PRIMARY)
        self.nodes = [Node(port, self.workdir / str(port)) for port in _free_ports(count)]
        try:
            for node in self.nodes:
                node.start()
            created = subprocess.run(
                [
                    "redis-cli",
                    "--cluster",
                    "create",
                    *(node.name for node in self.nodes),
                    "--cluster-replicas",
                    str(REPLICAS_PER_PRIMARY),
                    "--cluster-yes",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if created.returncode != 0:
                raise ClusterError(f"redis-cli --cluster create failed:\n{created.stdout}")
            self.wait_until_ok(all_replicas=True)
            self.wait_until_replicated()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def running(self) -> list[Node]:
        return [node for node in self.nodes if node.process is not None]

    def _cluster(self, node: Node, subcommand: str) -> Any:
        """CLUSTER <subcommand> on one node, as redis-py parses it."""
        client = node.client()
        try:
            return client.cluster(subcommand)
        finally:
            client.close()

    def _replication(self, node: Node) -> dict[str, Any]:
        client = node.client()
        try:
            return client.info("replication")
        finally:
            client.close()

    def state(self, node: Node) -> str:
        return str(self._cluster(node, "INFO").get("cluster_state", "unknown"))

    def wait_until_ok(self, timeout: float = 30, *, all_replicas: bool = False) -> None:
        """Every running node says cluster_state:ok and they agree on every node's role and
        slots; with `all_replicas`, every primary has its replicas too."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                states = {node.name: self.state(node) for node in self.running()}
                views = {self._view(node) for node in self.running()}
                replicated = not all_replicas or self._fully_replicated()
                if set(states.values()) == {"ok"} and len(views) == 1 and replicated:
                    return
            except (redis.RedisError, OSError) as exc:
                states = {"error": repr(exc)}
            if time.monotonic() > deadline:
                raise ClusterError(f"the cluster is not ok after {timeout} s: {states}")
            time.sleep(0.1)

    def wait_until_replicated(self, timeout: float = 30) -> None:
        """Every running replica has finished its sync with its primary (a replica that never
        synced cannot take over)."""
        deadline = time.monotonic() + timeout
        while True:
            pending = [
                node.name
                for node in self.running()
                if (info := self._replication(node))["role"] == "slave"
                and (info["master_link_status"] != "up" or info["master_sync_in_progress"])
            ]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"replicas not in sync after {timeout} s: {pending}")
            time.sleep(0.1)

    def _table(self, asked: Node | None = None) -> list[_Row]:
        """CLUSTER NODES, as one node sees it."""
        asked = asked or self.running()[0]
        rows = []
        for address, row in self._cluster(asked, "NODES").items():
            flags = set(row["flags"].split(",")) - {"myself"}
            slots = tuple(f"{first}-{last}" for first, last in row["slots"])
            rows.append(_Row(row["node_id"], address, flags, row["master_id"], slots))
        return rows

    def _by_address(self, address: str) -> Node:
        port = int(address.split("@", 1)[0].rsplit(":", 1)[1])
        return next(node for node in self.nodes if node.port == port)

    def _view(self, asked: Node) -> frozenset[tuple[str, ...]]:
        """Each node's address, role, primary and slots, as `asked` sees them."""
        table = self._table(asked)
        ids = {row.node_id: row.address for row in table}
        return frozenset(
            (row.address, ",".join(sorted(row.flags)), ids.get(row.primary_id, "-"), *row.slots)
            for row in table
        )

    def _fully_replicated(self) -> bool:
        table = self._table()
        primaries = [row.node_id for row in table if row.serving]
        return len(primaries) == PRIMARIES and all(
            sum(1 for row in table if row.primary_id == primary) == REPLICAS_PER_PRIMARY
            for primary in primaries
        )

    def primaries(self) -> list[Node]:
        """The nodes serving slots now."""
        return [self._by_address(row.address) for row in self._table() if row.serving]

    def primary_for_slot(self, slot: int) -> Node:
        for row in self._table():
            if not row.serving:
                continue
            for slots in row.slots:
                first, _, last = slots.partition("-")
                if int(first) <= slot <= int(last or first):
                    return self._by_address(row.address)
        raise ClusterError(f"no primary serves slot {slot}")

    def primary_for_key(self, key: str) -> Node:
        return self.primary_for_slot(key_slot(key.encode()))

    def replica_of(self, primary: Node) -> Node:
        table = self._table()
        primary_id = next(row.node_id for row in table if self._by_address(row.address) is primary)
        for row in table:
            if row.primary_id == primary_id and "fail" not in row.flags:
                return self._by_address(row.address)
        raise ClusterError(f"{primary.name} has no live replica")

    def failover(self, replica: Node, timeout: float = 30) -> None:
        """CLUSTER FAILOVER on the replica: it becomes the primary, with its old primary's
        agreement (no write lost)."""
        self._cluster(replica, "FAILOVER")
        deadline = time.monotonic() + timeout
        while replica not in self.primaries():
            if time.monotonic() > deadline:
                raise ClusterError(f"{replica.name} did not take over in {timeout} s")
            time.sleep(0.1)
        self.wait_until_ok(timeout)


def available() -> bool:
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


@contextmanager
def local_cluster() -> Iterator[LocalCluster]:
    cluster = LocalCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
