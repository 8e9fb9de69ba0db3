"""The load generator: wrk (C, event-driven) driven by two small Lua scripts.

`replay.lua` sends prepared requests, one per line of a file (each exactly once, or round and
round for a fixed time): a JSON or form body, or an access token for a GET (`Shape`); it counts
every non-2xx answer by status, and can capture string members of each answer (the
`challenge_token` of a login, the `access_token` and `refresh_token` of a challenge).
`get.lua` is a plain GET, optionally paced (the /healthz probe). Both print one
`WRK_RESULT {json}` line, parsed here.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Queue
from typing import IO, Any, Literal

HERE = Path(__file__).resolve().parent
REPLAY = HERE / "replay.lua"
GET = HERE / "get.lua"
THREADS = 2
CONNECTIONS = 64
# Per request, not per run: a login waits for argon2 behind 63 others.
TIMEOUT = "30s"
# No answer at all for this long ends a run: longer than the service's own time-outs
# (SQLite's busy timeout and the SQLAlchemy pool's, 30 s each), so what stuck requests end
# with is seen as their status, not as "unanswered".
STALL_S = 40.0


class LoadgenError(RuntimeError):
    pass


@dataclass(frozen=True)
class Shape:
    """How replay.lua turns a line into a request: `json` and `form` POST the line as the
    body, `bearer` GETs with the line as the access token; `header` ("Name: value") goes on
    every request."""

    line_as: Literal["json", "form", "bearer"] = "json"
    header: str | None = None

    def options(self) -> list[str]:
        out = [f"as={self.line_as}"]
        if self.header is not None:
            out.append(f"header={self.header}")
        return out


JSON = Shape()


@dataclass
class WrkResult:
    requests: int
    seconds: float
    non2xx: int
    statuses: dict[str, int]
    errors: dict[str, int]
    latency_ms: dict[str, float]
    complete: bool = True
    unanswered: int = 0
    cpu_seconds: float | None = None  # wrk's own CPU time (user + system)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "rps": round(self.rps, 1),
            "latency_ms": self.latency_ms,
            "non2xx": self.non2xx,
            "statuses": self.statuses,
            "socket_errors": self.errors,
            "complete": self.complete,
            "unanswered": self.unanswered,
            "wrk_cpu_share": round(self.cpu_seconds / self.seconds, 3)
            if self.cpu_seconds is not None and self.seconds
            else None,
        }


def write_bodies(path: Path, bodies: list[dict[str, str]]) -> Path:
    return write_lines(path, [json.dumps(b, separators=(",", ":")) for b in bodies])


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _parse(lines: list[str]) -> WrkResult:
    for line in lines:
        if line.startswith("WRK_RESULT "):
            raw: dict[str, Any] = json.loads(line.removeprefix("WRK_RESULT "))
            break
    else:
        raise LoadgenError("wrk printed no result:\n" + "".join(lines)[-2000:])
    statuses: dict[str, int] = {}
    for per_thread in raw["statuses_by_thread"]:
        for code, n in per_thread.items():
            statuses[code] = statuses.get(code, 0) + n
    latency = {k: round(v / 1000, 2) for k, v in raw["latency_us"].items()}
    return WrkResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        non2xx=raw["non2xx"],
        statuses=statuses,
        errors=raw["errors"],
        latency_ms=latency,
        raw=raw,
    )


def _wrk(url: str, script: Path, limit_s: float, threads: int, connections: int) -> list[str]:
    return [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(limit_s))}s",
        f"--timeout={TIMEOUT}",
        "-s",
        str(script),
        url,
        "--",
    ]


def replay_once(
    base_url: str,
    path: str,
    bodies: Path,
    *,
    limit_s: float,
    capture: Path | None = None,
    capture_fields: tuple[str, ...] = ("challenge_token",),
    shape: Shape = JSON,
    connections: int = CONNECTIONS,
    threads: int = THREADS,
    stall_s: float = STALL_S,
) -> WrkResult:
    """Send every line once at fixed concurrency; returns when the last answer is in (or when
    no answer came for `stall_s`: requests the server never answered are `unanswered`).
    With `capture`, the `capture_fields` of every answer go to `capture`.<thread>, one
    answer per line."""
    cmd = _wrk(base_url, REPLAY, limit_s, threads, connections)
    cmd += [str(bodies), path, "once", str(threads), *shape.options()]
    if capture is not None:
        cmd += [f"capture={capture}", f"fields={','.join(capture_fields)}"]
    lines: list[str] = []
    finished = 0
    stalled_for = 0.0
    cpu_before = _children_cpu()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        queue: Queue[str | None] = Queue()
        threading.Thread(target=_pump, args=(proc.stdout, queue), daemon=True).start()
        signalled = False
        last = time.monotonic()
        try:
            while (line := _next_line(queue)) is not None:
                if line == "":  # nothing for a second
                    if not signalled and time.monotonic() - last > stall_s:
                        stalled_for = time.monotonic() - last
                        proc.send_signal(signal.SIGINT)
                        signalled = True
                    continue
                last = time.monotonic()
                if line.startswith("WRK_PROGRESS"):
                    continue
                lines.append(line)
                if line.startswith("WRK_THREAD_DONE"):
                    finished += 1
                    if finished == threads and not signalled:
                        # wrk's main thread sleeps for the whole -d; SIGINT ends the sleep, and
                        # wrk reports (duration = the real run time) as after Ctrl-C.
                        proc.send_signal(signal.SIGINT)
                        signalled = True
        except BaseException:
            proc.kill()
            raise
    if proc.returncode != 0:
        raise LoadgenError(f"wrk exited with {proc.returncode}:\n" + "".join(lines)[-2000:])
    result = _parse(lines)
    result.cpu_seconds = _children_cpu() - cpu_before
    result.complete = finished == threads
    result.unanswered = sum(1 for _ in bodies.open()) - result.requests
    if stalled_for:  # the wait for answers that never came is no run time
        result.seconds = max(result.seconds - stalled_for, 1e-3)
    return result


def _pump(stream: IO[str], queue: Queue[str | None]) -> None:
    for line in stream:
        queue.put(line)
    queue.put(None)


def _next_line(queue: Queue[str | None]) -> str | None:
    """The next line; "" after a second without one; None at the end."""
    try:
        return queue.get(timeout=1.0)
    except Empty:
        return ""


def replay_for(
    base_url: str,
    path: str,
    bodies: Path,
    *,
    seconds: float,
    shape: Shape = JSON,
    connections: int = CONNECTIONS,
    threads: int = THREADS,
) -> WrkResult:
    """Send the lines round and round for a fixed time."""
    cmd = _wrk(base_url, REPLAY, seconds, threads, connections)
    cmd += [str(bodies), path, "cycle", str(threads), *shape.options()]
    return _run(cmd)


def get_for(
    url: str, *, seconds: float, connections: int = CONNECTIONS, threads: int = THREADS
) -> WrkResult:
    """Plain wrk GET (no response() callback) for a fixed time."""
    return _run(_wrk(url, GET, seconds, threads, connections))


def _run(cmd: list[str]) -> WrkResult:
    cpu_before = _children_cpu()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LoadgenError(f"wrk exited with {done.returncode}: {done.stderr[-2000:]}")
    result = _parse(done.stdout.splitlines(keepends=True))
    result.cpu_seconds = _children_cpu() - cpu_before
    return result


def _children_cpu() -> float:
    """CPU seconds of every child process reaped so far: the difference around one wrk run is
    that wrk's (the servers are reaped only when they stop, the probe after the run)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Probe:
    """A paced GET running alongside another load until stopped (the /healthz probe)."""

    def __init__(self, url: str, interval_ms: int, connections: int = 2) -> None:
        cmd = _wrk(url, GET, 3600, 1, connections) + [str(interval_ms)]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)

    def running(self) -> bool:
        return self._proc.poll() is None

    def stop(self) -> WrkResult:
        self._proc.send_signal(signal.SIGINT)
        out, _ = self._proc.communicate(timeout=30)
        return _parse(out.splitlines(keepends=True))

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
