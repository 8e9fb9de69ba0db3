"""The fuzzer's side of the app: one app per backend on an event loop of its own, reached
through `requests` (what Schemathesis sends with), and the people it acts as.

Schemathesis tests are synchronous Hypothesis tests; the app, its database pool and its Redis
client live on one event loop in a thread (an anyio blocking portal), and every request and
every helper call crosses into that loop. Nothing listens on a socket.

Before each case the deployment's Redis keys are deleted (what `tests.support.clean_redis`
does after a test): attempt counters, lockouts and challenges start empty, so a rate-limited
route answers what the case asked for and not a 429 left by the cases before it — and losing
Redis is something the service must take in its stride anyway (SPEC §1). Whatever a case
needs from Redis (a live challenge, pending WebAuthn options) is made after that reset.

Each case is sent with a real credential where the route needs one (an access token, a
challenge token, introspection client credentials), so generated bodies get past the door.
In every other positive case the fields that take a secret get a real one too (the current
TOTP code, the password, a refresh token, a security key's attestation or assertion, the id
of an existing credential), so the success paths and what lies behind them are fuzzed as well.
"""

from __future__ import annotations

import base64
import enum
import io
import tempfile
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import httpx
import pyotp
import requests
import requests.adapters
import urllib3
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi import FastAPI
from schemathesis import GenerationMode, Response
from urllib3._collections import HTTPHeaderDict

from mfa_service.app import create_app
from mfa_service.config import Settings
from mfa_service.secretbox import generate_data_key
from mfa_service.services import Services
from tests.support import PASSWORD, Backend, FakeClock, serving, settings_for
from tests.webauthn.authenticator import SoftAuthenticator

if TYPE_CHECKING:
    from schemathesis.specs.openapi.schemas import OpenApiCase

BASE_URL = "http://mfa.test"  # the test settings' issuer: also the WebAuthn origin
CLIENT = ("203.0.113.7", 50000)
INTROSPECTION_CLIENT = ("fuzz-introspector", "fuzz-introspector-secret")
# A token minted this long ago (clock seconds) is replaced before a case uses it: the routes
# that need a recent authentication (MFA_REAUTH_MAX_AGE, 300 s) must not refuse it for age.
FRESH_FOR = 200

P = ParamSpec("P")
T = TypeVar("T")

# The routes anyone may call (SPEC §2, §7); every other operation gets an access token.
PUBLIC = frozenset(
    {
        "POST /auth/register",
        "POST /auth/login",
        "POST /auth/refresh",
        "POST /mfa/challenge",
        "POST /auth/passkey/options",
        "POST /auth/passkey",
        "POST /auth/password/forgot",
        "POST /auth/password/reset/options",
        "POST /auth/password/reset",
        "POST /auth/email/verify",
        "POST /oauth/introspect",
        "GET /.well-known/jwks.json",
        "GET /.well-known/openid-configuration",
        "GET /healthz",
        "GET /readyz",
        "GET /openapi.json",
        "GET /docs",
    }
)
CREDENTIAL = "/mfa/webauthn/credentials/{credential_id}"
# Called as the user with a security key (a passkey), so they reach its credential.
KEY_ROUTES = frozenset(
    {
        "GET /mfa/webauthn/credentials",
        f"PATCH {CREDENTIAL}",
        f"DELETE {CREDENTIAL}",
        "POST /mfa/webauthn/registrations/options",
        "POST /mfa/webauthn/registrations",
        "POST /mfa/step-up/options",
    }
)
# Called as the user with TOTP, so they get past "no second factor" to the code checks (or,
# with a `webauthn` answer in the body, as the user with the key).
FACTOR_ROUTES = frozenset(
    {"POST /mfa/step-up", "POST /mfa/backup-codes", "DELETE /mfa/totp", "POST /mfa/challenge"}
)
# A success here ends or replaces the caller's session (or its refresh token): a new one is
# made for the next case.
ENDS_SESSION = frozenset(
    {
        "POST /auth/logout",
        "POST /auth/refresh",
        "POST /auth/password",
        "POST /auth/reauthenticate",
        "POST /mfa/totp/confirm",
        "DELETE /mfa/totp",
        "POST /mfa/webauthn/registrations",
        f"DELETE {CREDENTIAL}",
    }
)
# A success here leaves the user without the factor the fuzzer uses (or, for the password-only
# user, with one): a new user next time.
ENDS_USER = frozenset({"DELETE /mfa/totp", f"DELETE {CREDENTIAL}", "POST /mfa/totp/confirm"})


class Who(enum.Enum):
    PLAIN = "a user with a password only"
    TOTP = "a user with TOTP"
    KEY = "a user with a passkey"


def fuzz_settings(backend: Backend) -> Settings:
    """`settings_for` (the service's default limits) plus an introspection client."""
    return settings_for(
        backend, introspection_clients={INTROSPECTION_CLIENT[0]: INTROSPECTION_CLIENT[1]}
    )


def openapi_document() -> dict[str, Any]:
    """The document an app with the fuzz settings serves, made without starting it (at
    collection time, so every operation is a test of its own). The fuzz app is checked to
    serve the same one."""
    with tempfile.TemporaryDirectory(prefix="mfa-fuzz-") as tmp:
        data_dir = Path(tmp)
        database_url = f"sqlite+aiosqlite:///{data_dir / 'mfa.db'}"
        backend = Backend("sqlite", database_url, None, data_dir, generate_data_key())
        return create_app(fuzz_settings(backend)).openapi()


def operation_key(case: OpenApiCase) -> str:
    return f"{case.method.upper()} {case.path}"


def is_positive(case: OpenApiCase) -> bool:
    meta = case.meta
    return meta is None or meta.generation.mode is GenerationMode.POSITIVE


def who_for(key: str, body: dict[str, Any] | None) -> Who:
    if key in KEY_ROUTES:
        return Who.KEY
    if key in FACTOR_ROUTES:
        return Who.KEY if body is not None and body.get("webauthn") is not None else Who.TOTP
    return Who.PLAIN


ATTACHMENTS = ("platform", "cross-platform")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def latin1(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("latin-1")


class PortalAdapter(requests.adapters.HTTPAdapter):
    """A `requests` transport that hands each prepared request to an httpx client on the
    portal's event loop, and gives the bytes the app sent back as a `requests` response."""

    def __init__(self, portal: BlockingPortal, client: httpx.AsyncClient) -> None:
        super().__init__()
        self._portal = portal
        self._client = client

    def send(
        self, request: requests.PreparedRequest, *_args: Any, **_kwargs: Any
    ) -> requests.Response:
        body = request.body
        content = body.encode() if isinstance(body, str) else body
        assert content is None or isinstance(content, bytes), type(content)
        # Header values go over the wire as latin-1 octets, as a real server would get them.
        headers = [(latin1(k), latin1(v)) for k, v in request.headers.items()]
        status, reason, response_headers, payload = self._portal.call(
            self._forward, request.method or "GET", request.url or "/", headers, content
        )
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(payload),
            headers=response_headers,
            status=status,
            reason=reason,
            version=11,
            preload_content=False,
            decode_content=False,
        )
        return self.build_response(request, raw)

    async def _forward(
        self, method: str, url: str, headers: list[tuple[bytes, bytes]], content: bytes | None
    ) -> tuple[int, str, HTTPHeaderDict, bytes]:
        request = self._client.build_request(method, url, headers=headers, content=content)
        response = await self._client.send(request, stream=True)
        try:
            payload = b"".join([chunk async for chunk in response.aiter_raw()])
        finally:
            await response.aclose()
        response_headers = HTTPHeaderDict()
        for name, value in response.headers.multi_items():
            response_headers.add(name, value)
        return response.status_code, response.reason_phrase, response_headers, payload


@dataclass
class Signed:
    """A signed-in session: its tokens and when (clock time) it was made."""

    access_token: str
    refresh_token: str
    at: float


@dataclass
class User:
    email: str
    totp_secret: str | None = None
    authenticator: SoftAuthenticator | None = None
    credential_id: str | None = None  # the passkey's id in our API (a UUID)


class Actors:
    """The people the fuzzer acts as, made through the real API (argon2 and all) once and again
    only when a case changed them: a password-only user, a user with TOTP, a user with a
    passkey, a session of each, and fresh challenges. A user that a case changed beyond use (a
    new password from an example, its factor removed) is replaced by a new one."""

    def __init__(self, client: httpx.AsyncClient, clock: FakeClock) -> None:
        self._client = client
        self._clock = clock
        self._users: dict[Who, User] = {}
        self._sessions: dict[Who, Signed] = {}

    async def user(self, who: Who) -> User:
        if who not in self._users:
            self._users[who] = await self._enrol(who)
        return self._users[who]

    async def session(self, who: Who) -> Signed:
        signed = self._sessions.get(who)
        if signed is not None and self._clock.time() - signed.at <= FRESH_FOR:
            return signed
        signed = await self._sign_in(await self.user(who))
        if signed is None:  # a case gave the user another password or took its factor
            self._users[who] = await self._enrol(who)
            signed = await self._sign_in(self._users[who])
            assert signed is not None, f"{who.value}, just made, could not sign in"
        self._sessions[who] = signed
        return signed

    async def challenge(self, who: Who) -> tuple[str, dict[str, Any] | None]:
        """A new, unanswered challenge of the TOTP or the key user, and its WebAuthn options."""
        for _ in range(2):
            user = await self.user(who)
            body = await self._password(user.email)
            if body.get("status") == "mfa_required":
                return body["challenge_token"], body.get("webauthn")
            self.forget_user(who)
        raise AssertionError(f"{who.value}, just made, got no challenge: {body}")

    async def totp_code(self) -> str:
        """The TOTP user's code now. Whoever gets a success with it calls `code_used`."""
        secret = (await self.user(Who.TOTP)).totp_secret
        assert secret is not None
        return self.code_for(secret)

    def code_for(self, secret: str) -> str:
        return pyotp.TOTP(secret).at(self._clock.time())

    def code_used(self) -> None:
        """A code's time step counts once per user: the next code is the next step's."""
        self._clock.advance(30)

    def forget(self, who: Who) -> None:
        self._sessions.pop(who, None)

    def forget_user(self, who: Who) -> None:
        self._sessions.pop(who, None)
        self._users.pop(who, None)

    # -- through the API --------------------------------------------------------------------

    async def _password(self, email: str) -> dict[str, Any]:
        r = await self._client.post("/auth/login", json={"email": email, "password": PASSWORD})
        body: dict[str, Any] = r.json() if r.status_code == 200 else {}
        return body

    def _tokens(self, r: httpx.Response) -> Signed | None:
        if r.status_code != 200 or r.json().get("status") != "authenticated":
            return None
        tokens = r.json()
        return Signed(tokens["access_token"], tokens["refresh_token"], self._clock.time())

    async def _sign_in(self, user: User) -> Signed | None:
        body = await self._password(user.email)
        if body.get("status") == "authenticated":
            return Signed(body["access_token"], body["refresh_token"], self._clock.time())
        if body.get("status") != "mfa_required":
            return None
        answer: dict[str, Any] = {"challenge_token": body["challenge_token"]}
        if user.authenticator is not None and body.get("webauthn") is not None:
            answer["webauthn"] = user.authenticator.get(body["webauthn"])
        elif user.totp_secret is not None:
            answer["code"] = self.code_for(user.totp_secret)
        else:
            return None
        signed = self._tokens(await self._client.post("/mfa/challenge", json=answer))
        if signed is not None and "code" in answer:
            self.code_used()
        return signed

    async def _enrol(self, who: Who) -> User:
        email = f"fuzz-{uuid.uuid4().hex[:12]}@example.com"
        r = await self._client.post("/auth/register", json={"email": email, "password": PASSWORD})
        assert r.status_code == 201, r.text
        user = User(email)
        if who is Who.PLAIN:
            return user
        signed = await self._sign_in(user)
        assert signed is not None
        auth = bearer(signed.access_token)
        if who is Who.TOTP:
            setup = await self._client.post("/mfa/totp/setup", headers=auth)
            assert setup.status_code == 200, setup.text
            user.totp_secret = secret = setup.json()["secret"]
            confirm = await self._client.post(
                "/mfa/totp/confirm", headers=auth, json={"code": self.code_for(secret)}
            )
            assert confirm.status_code == 200, confirm.text
            self.code_used()
        else:
            user.authenticator = SoftAuthenticator(origin=BASE_URL)
            options = await self._client.post(
                "/mfa/webauthn/registrations/options", headers=auth, json={"passkey": True}
            )
            assert options.status_code == 200, options.text
            credential = user.authenticator.create(options.json())
            r = await self._client.post(
                "/mfa/webauthn/registrations",
                headers=auth,
                json={"credential": credential, "name": "fuzz passkey"},
            )
            assert r.status_code == 201, r.text
            user.credential_id = r.json()["credential"]["id"]
        self._sessions.pop(who, None)
        return user


class Fuzzing:
    """Per case: Redis emptied, the case given real credentials, sent to the app."""

    def __init__(
        self,
        portal: BlockingPortal,
        app: FastAPI,
        client: httpx.AsyncClient,
        fuzz_client: httpx.AsyncClient,
        clock: FakeClock,
    ) -> None:
        self.portal = portal
        self.app = app
        self.client = client
        self.clock = clock
        self.actors = Actors(client, clock)
        self.session = requests.Session()
        self.session.mount("http://", PortalAdapter(portal, fuzz_client))
        self.statuses: defaultdict[str, Counter[int]] = defaultdict(Counter)
        self._seen: Counter[str] = Counter()
        self._code_sent = False
        self._who = Who.PLAIN

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    def run(self, func: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        async def call() -> T:
            return await func(*args, **kwargs)

        return self.portal.call(call)

    def openapi(self) -> dict[str, Any]:
        r = self.run(self.client.get, "/openapi.json")
        assert r.status_code == 200, r.text
        document: dict[str, Any] = r.json()
        return document

    def call(self, case: OpenApiCase) -> Response:
        self.run(self._prepare, case)
        response = case.call(session=self.session, base_url=BASE_URL)
        key = operation_key(case)
        self.statuses[key][response.status_code] += 1
        if 200 <= response.status_code < 300:
            if self._code_sent:
                self.actors.code_used()
            if key in ENDS_USER:
                self.actors.forget_user(self._who)
            elif key in ENDS_SESSION:
                self.actors.forget(self._who)
        return response

    async def _reset_redis(self) -> None:
        redis = self.services.redis
        prefix = self.services.settings.redis_prefix
        keys = [k async for k in redis.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await redis.delete(*keys)

    async def _prepare(self, case: OpenApiCase) -> None:
        await self._reset_redis()
        key = operation_key(case)
        self._seen[key] += 1
        n = self._seen[key]
        positive = is_positive(case)
        # Real secrets in every other positive case: the rest stay as generated.
        real = positive and n % 2 == 0
        body = case.body if isinstance(case.body, dict) else None
        who = self._who = who_for(key, body)
        self._code_sent = False
        actors = self.actors
        headers: dict[str, str] = {}

        if key not in PUBLIC:
            signed = await actors.session(who)
            headers |= bearer(signed.access_token)
            if real and body is not None:
                if key == "POST /auth/reauthenticate" and "password" in body:
                    body["password"] = PASSWORD
                if key == "POST /auth/logout" and "refresh_token" in body:
                    body["refresh_token"] = signed.refresh_token
                if who is Who.TOTP and isinstance(body.get("code"), str):
                    body["code"] = await actors.totp_code()
                    self._code_sent = True
                if key == "POST /mfa/totp/confirm" and isinstance(body.get("code"), str):
                    setup = await self.client.post("/mfa/totp/setup", headers=headers)
                    assert setup.status_code == 200, setup.text
                    body["code"] = actors.code_for(setup.json()["secret"])
                    self._code_sent = True
            if positive and who is Who.KEY and key in FACTOR_ROUTES:
                r = await self.client.post("/mfa/step-up/options", headers=headers)
                if real and body is not None and r.status_code == 200:
                    body["webauthn"] = await self._assertion(r.json())
            if positive and key == "POST /mfa/webauthn/registrations":
                r = await self.client.post(
                    "/mfa/webauthn/registrations/options", headers=headers, json={}
                )
                assert r.status_code == 200, r.text
                if real and body is not None:
                    body["credential"] = SoftAuthenticator(origin=BASE_URL).create(r.json())
            if real and case.path == CREDENTIAL:
                credential_id = (await actors.user(Who.KEY)).credential_id
                assert credential_id is not None
                case.path_parameters = (case.path_parameters or {}) | {
                    "credential_id": credential_id
                }

        elif key == "POST /mfa/challenge" and positive:
            token, options = await actors.challenge(who)
            if body is not None and "challenge_token" in body:
                body["challenge_token"] = token
            else:
                headers |= bearer(token)
            if real and body is not None:
                if who is Who.KEY and options is not None:
                    body["webauthn"] = await self._assertion(options)
                elif isinstance(body.get("code"), str):
                    body["code"] = await actors.totp_code()
                    self._code_sent = True
        elif key == "POST /auth/passkey" and positive:
            r = await self.client.post("/auth/passkey/options")
            assert r.status_code == 200, r.text
            credential = body.get("credential") if body is not None else None
            if real and isinstance(credential, dict):
                if n % 4 == 0:  # a whole, valid assertion
                    assert body is not None
                    body["credential"] = await self._assertion(r.json())
                else:  # the passkey's id, the rest as generated: verification is reached
                    user = await actors.user(Who.KEY)
                    assert user.authenticator is not None
                    credential["id"] = credential["rawId"] = user.authenticator.credentials[
                        0
                    ].id_b64
        elif key == "POST /auth/login" and real and body is not None:
            body["email"] = (await actors.user(Who.PLAIN)).email
            body["password"] = PASSWORD
        elif key == "POST /auth/refresh" and real and body is not None:
            body["refresh_token"] = (await actors.session(Who.PLAIN)).refresh_token
            actors.forget(Who.PLAIN)  # rotated if it works
        elif key == "POST /oauth/introspect":
            client_id, secret = INTROSPECTION_CLIENT
            if body is not None and "client_id" in body:
                if positive:
                    body["client_id"], body["client_secret"] = client_id, secret
            else:
                basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
                headers["Authorization"] = f"Basic {basic}"
            if real and body is not None and "token" in body:
                body["token"] = (await actors.session(Who.PLAIN)).access_token

        if headers:
            case.headers = case.headers or {}  # type: ignore[assignment]
            case.headers.update(headers)

    async def _assertion(self, options: dict[str, Any]) -> dict[str, Any]:
        """The key user's passkey answering these request options."""
        user = await self.actors.user(Who.KEY)
        assert user.authenticator is not None
        return user.authenticator.get(options)


@contextmanager
def fuzzing(settings: Settings, clock: FakeClock) -> Iterator[Fuzzing]:
    """The app with its lifespan on a portal of its own; Redis keys cleaned afterwards. The
    fuzzer's requests go through a client that turns an unhandled exception into the 500 a
    server would answer (so Schemathesis sees and reports it); the helpers' client raises."""
    with start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(serving(settings, clock)) as (app, client):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=CLIENT)
            fuzz_client = httpx.AsyncClient(transport=transport, base_url=BASE_URL)
            try:
                yield Fuzzing(portal, app, client, fuzz_client, clock)
            finally:
                portal.call(fuzz_client.aclose)
