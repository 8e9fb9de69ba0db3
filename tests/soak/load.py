"""The soak test's load: virtual clients logging in, answering challenges (right and wrong
codes, backup codes), refreshing and reading /users/me against several instances, and a
ledger of what each answer proved, for the invariants checked afterwards."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
import pyotp

from tests.support import PASSWORD, bearer

# Errors where the request may have reached a server that then died: its effect is unknown.
LOST = (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError, httpx.ReadTimeout)
STEP = 30


@dataclass
class SoakUser:
    email: str
    user_id: uuid.UUID
    secret: str
    backup_codes: list[str]
    # The last TOTP step this user's code was sent for (used or maybe used).
    last_step: int
    # Only these users are sent wrong codes: the others must keep passing their challenges.
    target: bool = False
    busy: bool = False


@dataclass
class Ledger:
    """Every answer, counted; what the successes proved, for the invariants."""

    statuses: Counter[str] = field(default_factory=Counter)
    totp_successes: list[tuple[uuid.UUID, int]] = field(default_factory=list)
    backup_successes: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    # Sent and then lost (the instance died or the connection broke): may have been used.
    backup_maybe_used: Counter[uuid.UUID] = field(default_factory=Counter)
    wrong_code_evaluated: Counter[uuid.UUID] = field(default_factory=Counter)
    session_ids: set[uuid.UUID] = field(default_factory=set)
    # (time since start, path, status, detail) of every 5xx and every request lost in flight.
    failures: list[tuple[float, str, str, str]] = field(default_factory=list)
    requests: int = 0
    started: float = field(default_factory=time.monotonic)

    def note(self, path: str, outcome: str, detail: str = "") -> None:
        self.requests += 1
        self.statuses[f"{path} {outcome}"] += 1
        if outcome.startswith("5") or outcome == "lost":
            self.failures.append((time.monotonic() - self.started, path, outcome, detail))


def session_of(access_token: str) -> uuid.UUID:
    payload = access_token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return uuid.UUID(claims["sid"])


class Instances:
    """The service instances by base URL; a refused connection marks one down and the
    request goes to the next (what a load balancer does)."""

    def __init__(self, urls: list[str], timeout: float) -> None:
        self.clients = [httpx.AsyncClient(base_url=u, timeout=timeout) for u in urls]
        self.down: set[int] = set()
        self._next = 0

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()

    async def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for _ in range(len(self.clients)):
            index = self._pick()
            try:
                return await self.clients[index].request(method, path, **kwargs)
            except httpx.ConnectError:
                self.down.add(index)  # never reached a server: safe to send elsewhere
        raise httpx.ConnectError("no instance accepts connections")

    def _pick(self) -> int:
        alive = [i for i in range(len(self.clients)) if i not in self.down]
        if not alive:
            raise httpx.ConnectError("every instance is down")
        self._next += 1
        return alive[self._next % len(alive)]


class Load:
    def __init__(self, instances: Instances, users: list[SoakUser], ledger: Ledger) -> None:
        self.instances = instances
        self.users = users
        self.ledger = ledger
        self.random = random.Random(7)

    async def run(self, clients: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(self._client(deadline) for _ in range(clients)))

    async def _client(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            free = [u for u in self.users if not u.busy]
            if not free:
                await asyncio.sleep(0.05)
                continue
            user = self.random.choice(free)
            user.busy = True
            try:
                await self._session(user)
            finally:
                user.busy = False

    async def _call(
        self, method: str, path: str, label: str = "", **kwargs: Any
    ) -> httpx.Response | None:
        """One request, to whichever instance takes it; None if no answer came. Counted in
        the ledger under its path and `label`."""
        name = f"{path} {label}".strip()
        try:
            r = await self.instances.send(method, path, **kwargs)
        except LOST as exc:
            self.ledger.note(name, "lost", f"{type(exc).__name__} from {exc.request.url.netloc!r}")
            return None
        except httpx.ConnectError:
            self.ledger.note(name, "no instance")
            await asyncio.sleep(0.1)
            return None
        self.ledger.note(name, str(r.status_code))
        return r

    async def _session(self, user: SoakUser) -> None:
        """One login, its challenge, and what a client does with the tokens."""
        body = {"email": user.email, "password": PASSWORD}
        r = await self._call("POST", "/auth/login", "(guess)" if user.target else "", json=body)
        if r is None or r.status_code != 200:
            await asyncio.sleep(0.05)
            return
        token = r.json()["challenge_token"]
        tokens = await self._answer(user, token)
        if tokens is None:
            return
        access, refresh = tokens["access_token"], tokens["refresh_token"]
        for _ in range(2):
            r = await self._call("GET", "/users/me", headers=bearer(access))
            r = await self._call("POST", "/auth/refresh", json={"refresh_token": refresh})
            if r is None or r.status_code != 200:
                return
            self.ledger.session_ids.add(session_of(r.json()["access_token"]))
            access, refresh = r.json()["access_token"], r.json()["refresh_token"]
        # A stolen copy of the current refresh token raced against its owner: one wins at most.
        racers = await asyncio.gather(
            *(
                self._call("POST", "/auth/refresh", "(race)", json={"refresh_token": refresh})
                for _ in range(2)
            )
        )
        for racer in racers:
            if racer is not None and racer.status_code == 200:
                self.ledger.session_ids.add(session_of(racer.json()["access_token"]))

    async def _answer(self, user: SoakUser, token: str) -> dict[str, Any] | None:
        now_step = int(time.time()) // STEP
        # This step or the next: the service takes one step either side of its own, so the
        # code still passes when a step boundary falls between here and the service.
        step = max(now_step, user.last_step + 1)
        if user.target:
            # The attacker's guesses: wrong codes, a few at once on the same challenge.
            body = {"challenge_token": token}
            guesses = [f"{self.random.randrange(10**6):06d}" for _ in range(3)]
            right = {
                pyotp.TOTP(user.secret).at(s * STEP) for s in range(now_step - 1, now_step + 2)
            }
            answers = await asyncio.gather(
                *(
                    self._call(
                        "POST",
                        "/mfa/challenge",
                        "(guess)",
                        json={"challenge_token": token, "code": g},
                    )
                    for g in guesses
                    if g not in right
                )
            )
            for answer in answers:
                if answer is not None and answer.status_code == 401:
                    if answer.json()["code"] == "invalid_code":
                        self.ledger.wrong_code_evaluated[user.user_id] += 1
            return None
        if step > now_step + 1:
            # Every code this user may send now is spent: a backup code, if one is left.
            if not user.backup_codes:
                return None
            code = user.backup_codes.pop()
            proof: dict[str, str] = {"backup_code": code}
        else:
            user.last_step = step
            proof = {"code": pyotp.TOTP(user.secret).at(step * STEP)}
        body = {"challenge_token": token, **proof}
        r = await self._call("POST", "/mfa/challenge", json=body)
        if r is None:
            if "backup_code" in proof:
                self.ledger.backup_maybe_used[user.user_id] += 1
            return None
        if r.status_code != 200:
            if r.status_code >= 500 and "backup_code" in proof:
                # Refused after the code was spent (its session could not be stored): a
                # refusal, never a token, and the code stays used.
                self.ledger.backup_maybe_used[user.user_id] += 1
            return None
        if "backup_code" in proof:
            self.ledger.backup_successes.append((user.user_id, proof["backup_code"]))
        else:
            self.ledger.totp_successes.append((user.user_id, step))
        tokens: dict[str, Any] = r.json()
        self.ledger.session_ids.add(session_of(tokens["access_token"]))
        return tokens


def grouped(pairs: list[tuple[uuid.UUID, Any]]) -> dict[uuid.UUID, list[Any]]:
    out: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for key, value in pairs:
        out[key].append(value)
    return out
