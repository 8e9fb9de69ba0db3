"""Starting and stopping uvicorn (the service, the floor) and reading its workers' memory.

Both run as `mfa-service serve` runs the service (cli.py): uvicorn's own forwarded-header
handling off, no Server header; and, for benchmarking, no access log. Each server gets its own
process group, so a stop ends the master and its workers and nothing else.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STARTED = "Application startup complete."


class ServerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    def __init__(
        self, app: str, *, port: int, workers: int, env: dict[str, str], log: Path, health_path: str
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.log = log
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--factory",
            "--app-dir",
            str(ROOT),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
            # info: uvicorn's start-up lines tell when every worker is ready; with the access
            # log off nothing is logged per request.
            "--log-level",
            "info",
            "--no-access-log",
            "--no-proxy-headers",
            "--forwarded-allow-ips",
            "",
            "--no-server-header",
        ]
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            self._wait_ready(health_path)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, health_path: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"server exited with {self.proc.returncode}; see {self.log}")
            if self.log.read_text(errors="replace").count(STARTED) >= self.workers:
                try:
                    with urllib.request.urlopen(self.url + health_path, timeout=2) as answer:
                        if answer.status == 200:
                            return
                except (urllib.error.URLError, OSError):
                    pass
            time.sleep(0.1)
        raise ServerError(f"server not ready after {timeout:.0f} s; see {self.log}")

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: uvicorn itself with one worker, else the
        children it spawned (not multiprocessing's resource tracker)."""
        if self.workers == 1:
            return [self.proc.pid]
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid and "resource_tracker" not in cmdline:
                pids.append(int(entry.name))
        return sorted(pids)

    def memory_mb(self, field: str = "VmHWM") -> list[float]:
        """A memory figure of every worker from /proc/<pid>/status, in MB (10^6 bytes):
        VmHWM, the peak resident set, or VmRSS, the current one."""
        values = []
        for pid in self.worker_pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    values.append(round(int(line.split()[1]) * 1024 / 1e6, 1))
        return values

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass
