"""Request bodies over MFA_MAX_BODY_BYTES answer 413 `payload_too_large` without being read
(SPEC §4); every answer carrying a token, a challenge token, a secret or backup codes has
`Cache-Control: no-store` (SPEC §2)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from tests.serve import embedded_env, serving
from tests.support import (
    PASSWORD,
    Backend,
    FakeClock,
    bearer,
    free_port,
    new_email,
    register,
    running_app,
    settings_for,
    totp_code,
)

MIB = 1 << 20
CHUNK = 64 * 1024
# Valid JSON, so a server without the limit would parse (and keep) all of it.
BIG_BODY = b'{"challenge_token": "' + b"a" * (8 * MIB) + b'", "code": "123456"}'
JSON = {"Content-Type": "application/json"}


class Chunks:
    """A request body sent chunked (no Content-Length), counting what was pulled from it."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.body), CHUNK):
            chunk = self.body[start : start + CHUNK]
            self.pulled += len(chunk)
            yield chunk


def assert_too_large(r: httpx.Response) -> None:
    what = f"{r.request.method} {r.request.url.path} -> {r.status_code} {r.text[:300]}"
    assert r.status_code == 413, what
    assert r.headers["content-type"] == "application/problem+json", what
    body = r.json()
    assert body["code"] == "payload_too_large", what
    assert body["status"] == 413, what
    assert set(body) >= {"type", "title", "status", "detail", "code"}, what
    assert r.headers["cache-control"] == "no-store", what


async def test_a_large_body_with_content_length_is_refused(client: httpx.AsyncClient) -> None:
    r = await client.post("/mfa/challenge", content=BIG_BODY, headers=JSON)
    assert_too_large(r)
    # Refused before anything else looks at the request: authentication, routing.
    assert_too_large(await client.post("/users/me", content=BIG_BODY, headers=bearer("x")))
    assert_too_large(await client.post("/no/such/route", content=BIG_BODY))


async def test_a_large_chunked_body_is_refused_at_the_limit(client: httpx.AsyncClient) -> None:
    body = Chunks(BIG_BODY)
    r = await client.post("/mfa/challenge", content=body, headers=JSON)
    assert "content-length" not in r.request.headers
    assert_too_large(r)
    # Reading stopped at the limit (65536 bytes), not at the end of the 8 MiB.
    assert body.pulled <= 65536 + CHUNK, body.pulled
    # A form body too (introspection parses forms, not JSON).
    form = Chunks(b"token=" + b"a" * MIB)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    assert_too_large(await client.post("/oauth/introspect", content=form, headers=headers))
    assert form.pulled <= 65536 + CHUNK, form.pulled


async def test_the_limit_is_the_setting(backend: Backend, clock: FakeClock) -> None:
    settings = settings_for(backend, max_body_bytes=2048)
    async with running_app(settings, clock) as client:
        email = new_email()
        await register(client, email)
        login = json.dumps({"email": email, "password": PASSWORD}).encode()
        at_limit = login + b" " * (2048 - len(login))  # JSON may end in whitespace
        for content in (at_limit, Chunks(at_limit)):
            r = await client.post("/auth/login", content=content, headers=JSON)
            assert r.status_code == 200, r.text
        over = at_limit + b" "
        for content in (over, Chunks(over)):
            assert_too_large(await client.post("/auth/login", content=content, headers=JSON))


async def test_a_cross_origin_client_can_read_the_413(backend: Backend, clock: FakeClock) -> None:
    settings = settings_for(backend, cors_origins="https://app.example")
    async with running_app(settings, clock) as client:
        for content in (BIG_BODY, Chunks(BIG_BODY)):
            r = await client.post(
                "/mfa/challenge", content=content, headers={**JSON, "Origin": "https://app.example"}
            )
            assert_too_large(r)
            assert r.headers["access-control-allow-origin"] == "https://app.example"


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak so far) of a process, in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines())
    return {name: int(fields[name].split()[0]) for name in ("VmRSS", "VmHWM")}


def reset_peak(pid: int) -> None:
    """VmHWM from now on (Linux >= 4.0); where that is refused, the peak since the start."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


async def test_a_live_server_keeps_no_large_body(tmp_path: Path) -> None:
    """Against `mfa-service serve`: 8 MiB bodies, 8 at a time, with Content-Length and
    chunked; the server's memory, at its peak too, grows by far less than one body."""
    port = free_port()
    log = tmp_path / "server.log"
    async with serving(embedded_env(tmp_path / "data", port), port, log) as pid:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:

            async def send_big(chunked: bool) -> None:
                content = Chunks(BIG_BODY) if chunked else BIG_BODY
                assert_too_large(await http.post("/mfa/challenge", content=content, headers=JSON))

            # First use of each path allocates what any request would (code, buffers).
            await send_big(False)
            await send_big(True)
            reset_peak(pid)
            before = memory_kib(pid)
            for _ in range(3):
                await asyncio.gather(*(send_big(chunked) for chunked in (False, True) * 4))
            after = memory_kib(pid)
            # The connection still works: the server read the rest of each body and dropped it.
            assert (await http.get("/healthz")).status_code == 200
    growth = {name: after[name] - before[name] for name in after}
    # 24 bodies of 8 MiB, 8 at a time: holding even one (and its parsed copy) passes this.
    assert growth["VmHWM"] < 20 * 1024, (before, after)
    assert growth["VmRSS"] < 20 * 1024, (before, after)


# --- Cache-Control --------------------------------------------------------------------------

CLIENT_ID = "api"
CLIENT_SECRET = "s" * 32


def assert_no_store(r: httpx.Response, status: int = 200) -> None:
    what = f"{r.request.method} {r.request.url.path} -> {r.status_code} {r.text[:300]}"
    assert r.status_code == status, what
    assert r.headers.get("cache-control") == "no-store", what


async def test_answers_with_tokens_or_secrets_are_not_stored(
    backend: Backend, clock: FakeClock
) -> None:
    settings = settings_for(backend, introspection_clients=f"{CLIENT_ID}:{CLIENT_SECRET}")
    async with running_app(settings, clock) as client:
        email = new_email()
        await register(client, email)
        login = {"email": email, "password": PASSWORD}

        r = await client.post("/auth/login", json=login)  # TokenResponse
        assert_no_store(r)
        access = r.json()["access_token"]
        setup = await client.post("/mfa/totp/setup", headers=bearer(access))  # the secret
        assert_no_store(setup)
        secret = setup.json()["secret"]
        r = await client.post(
            "/mfa/totp/confirm", headers=bearer(access), json={"code": totp_code(secret, clock)}
        )  # backup codes
        assert_no_store(r)
        clock.advance(30)

        r = await client.post("/auth/login", json=login)  # ChallengeResponse
        assert_no_store(r)
        assert r.json()["status"] == "mfa_required"
        r = await client.post(
            "/mfa/challenge",
            json={"challenge_token": r.json()["challenge_token"], "code": totp_code(secret, clock)},
        )
        assert_no_store(r)
        tokens = r.json()
        r = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert_no_store(r)
        access = r.json()["access_token"]
        clock.advance(30)
        r = await client.post(
            "/mfa/step-up", headers=bearer(access), json={"code": totp_code(secret, clock)}
        )
        assert_no_store(r)
        access = r.json()["access_token"]
        clock.advance(30)
        r = await client.post(
            "/mfa/backup-codes", headers=bearer(access), json={"code": totp_code(secret, clock)}
        )
        assert_no_store(r)
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        r = await client.post(
            "/oauth/introspect",
            data={"token": access},
            headers={"Authorization": f"Basic {basic}"},
        )
        assert_no_store(r)
        assert r.json()["active"] is True
        # Refusals too: nothing needs to remember them.
        r = await client.post("/auth/login", json={**login, "password": "wrong password!"})
        assert_no_store(r, 401)
        assert_no_store(await client.get("/users/me", headers=bearer(access)))


async def test_public_documents_keep_their_caching(client: httpx.AsyncClient) -> None:
    jwks = await client.get("/.well-known/jwks.json")
    assert jwks.status_code == 200
    assert jwks.headers["cache-control"] == "public, max-age=300"
    # Swagger UI's files: kept by the browser, revalidated by ETag.
    page = await client.get("/docs")
    assert page.headers["cache-control"] == "no-store"
    asset = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200
    assert asset.headers["cache-control"] == "no-cache"
    again = await client.get(
        "/docs/assets/swagger-ui-bundle.js", headers={"If-None-Match": asset.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.headers["cache-control"] == "no-cache"


async def test_the_413_is_documented(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    documented = schema["paths"]["/mfa/challenge"]["post"]["responses"]["413"]
    examples = documented["content"]["application/problem+json"]["examples"]
    assert examples["payload_too_large"]["value"]["code"] == "payload_too_large"
