"""Counting TCP proxies for the round-trip census: what the service says to Redis and to
PostgreSQL per request, exactly, whoever else uses those servers.

A proxy listens on a free local port, forwards both ways, and parses what the client sends:
Redis commands (RESP arrays) or PostgreSQL frontend messages (simple queries, and
Parse/Bind/Execute of the extended protocol, so each executed statement is known by its SQL
even when it runs from a cached prepared statement). A *round trip* is counted each time the
client sends after having received (or at first): a pipeline, or asyncpg's Bind+Execute+Sync,
is one round trip. Only for the census (a few sequential requests): it adds latency.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from collections.abc import Callable
from typing import Protocol

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


class Tally:
    """What one proxy saw, in order. Read from another thread between requests."""

    def __init__(self) -> None:
        self.round_trips = 0
        self.events: list[str] = []  # Redis commands or SQL statements

    def mark(self) -> tuple[int, int]:
        return self.round_trips, len(self.events)

    def since(self, mark: tuple[int, int]) -> tuple[int, list[str]]:
        return self.round_trips - mark[0], self.events[mark[1] :]


class Parser(Protocol):
    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        """(bytes to forward to the server, bytes to answer the client directly)."""
        ...


class RedisParser:
    """Client-to-server RESP: one event per command, `EVALSHA <script>` for scripts."""

    def __init__(self, tally: Tally, scripts: dict[str, str]) -> None:
        self._tally = tally
        self._scripts = scripts  # sha1 → readable name
        self._buf = b""

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        self._buf += data
        while (command := self._next()) is not None:
            self._tally.events.append(command)
        return data, b""

    def _next(self) -> str | None:
        buf = self._buf
        end = buf.find(b"\r\n")
        if end < 0:
            return None
        if not buf.startswith(b"*"):  # an inline command
            self._buf = buf[end + 2 :]
            return buf[:end].decode(errors="replace").split(" ")[0].upper()
        pos, parts = end + 2, []
        for _ in range(int(buf[1:end])):
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return None
            start = end + 2
            size = int(buf[pos + 1 : end])
            if len(buf) < start + size + 2:
                return None
            parts.append(buf[start : start + size])
            pos = start + size + 2
        self._buf = buf[pos:]
        name = parts[0].decode(errors="replace").upper() if parts else ""
        if name in ("SCRIPT", "CLIENT", "CONFIG", "COMMAND") and len(parts) > 1:
            name += " " + parts[1].decode(errors="replace").upper()
        if name in ("EVAL", "EVALSHA") and len(parts) > 1:
            sha = parts[1].decode() if name == "EVALSHA" else hashlib.sha1(parts[1]).hexdigest()
            name += " " + self._scripts.get(sha, sha[:8])
        return name


class PostgresParser:
    """Client-to-server PostgreSQL protocol: one event per executed statement (its SQL).

    An SSL or GSSAPI request is declined here (the client then goes on in plain text), so the
    messages can be read whatever the server offers.
    """

    def __init__(self, tally: Tally) -> None:
        self._tally = tally
        self._buf = b""
        self._started = False
        self._prepared: dict[bytes, str] = {}
        self._portals: dict[bytes, bytes] = {}

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        self._buf += data
        forward, reply = bytearray(), bytearray()
        while True:
            if not self._started:  # untyped: length, code
                if len(self._buf) < 8:
                    break
                length = int.from_bytes(self._buf[:4], "big")
                if len(self._buf) < length:
                    break
                message, self._buf = self._buf[:length], self._buf[length:]
                if int.from_bytes(message[4:8], "big") in (SSL_REQUEST, GSSENC_REQUEST):
                    reply += b"N"
                    continue
                self._started = True
                forward += message
                continue
            if len(self._buf) < 5:
                break
            length = int.from_bytes(self._buf[1:5], "big")
            if len(self._buf) < 1 + length:
                break
            message, self._buf = self._buf[: 1 + length], self._buf[1 + length :]
            self._read(message[:1], message[5:])
            forward += message
        return bytes(forward), bytes(reply)

    def _read(self, kind: bytes, payload: bytes) -> None:
        if kind == b"P":  # Parse: statement name, query
            name, query, _ = payload.split(b"\0", 2)
            self._prepared[name] = _one_line(query.decode(errors="replace"))
        elif kind == b"B":  # Bind: portal, statement
            portal, statement, _ = payload.split(b"\0", 2)
            self._portals[portal] = statement
        elif kind == b"E":  # Execute: portal
            bound = self._portals.get(payload.split(b"\0", 1)[0])
            self._tally.events.append(self._prepared.get(bound, "?") if bound is not None else "?")
        elif kind == b"Q":  # a simple query
            self._tally.events.append(_one_line(payload.rstrip(b"\0").decode(errors="replace")))


def _one_line(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip()


class CountingProxy:
    """A TCP proxy to `upstream`, running in a thread of its own with its own event loop."""

    def __init__(
        self, upstream_host: str, upstream_port: int, parser: Callable[[Tally], Parser]
    ) -> None:
        self.tally = Tally()
        self._upstream = (upstream_host, upstream_port)
        self._parser = parser
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    def start(self) -> int:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self.port = future.result(timeout=10)
        return self.port

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self._upstream)
        except OSError:
            client_w.close()
            return
        parser = self._parser(self.tally)
        last = ["server"]  # who spoke last on this connection

        async def client_to_server() -> None:
            while data := await client_r.read(65536):
                if last[0] != "client":
                    self.tally.round_trips += 1
                    last[0] = "client"
                forward, reply = parser.feed(data)
                if reply:
                    last[0] = "server"
                    client_w.write(reply)
                    await client_w.drain()
                if forward:
                    server_w.write(forward)
                    await server_w.drain()
            server_w.close()

        async def server_to_client() -> None:
            while data := await server_r.read(65536):
                last[0] = "server"
                client_w.write(data)
                await client_w.drain()
            client_w.close()

        try:
            await asyncio.gather(client_to_server(), server_to_client())
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            client_w.close()
            server_w.close()
