"""The application factory: everything is built in the lifespan, nothing at import time."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy.ext.asyncio import AsyncEngine

from mfa_service import migrations
from mfa_service.account_page.site import install_account_page
from mfa_service.accounts import routes as accounts_routes
from mfa_service.accounts.passwords import PasswordHasher
from mfa_service.audit import routes as audit_routes
from mfa_service.challenges import routes as challenges_routes
from mfa_service.clock import Clock, SystemClock
from mfa_service.config import Settings
from mfa_service.db import (
    create_engine,
    create_sessionmaker,
    create_statement_sessionmaker,
    open_pool,
)
from mfa_service.devices import routes as devices_routes
from mfa_service.docs import install_docs, operation_id
from mfa_service.errors import PayloadTooLarge, install_handlers, responses
from mfa_service.factors import routes as factors_routes
from mfa_service.factors.throttle import FactorThrottle
from mfa_service.factors.webauthn import routes as webauthn_routes
from mfa_service.health import router as health_router
from mfa_service.http_guards import HttpGuards
from mfa_service.introspection import routes as introspection_routes
from mfa_service.limits.attempts import AttemptLimiter
from mfa_service.limits.login import LoginLimiter
from mfa_service.mail import service as mail
from mfa_service.observability import routes as observability_routes
from mfa_service.observability.middleware import Observability
from mfa_service.outbox.worker import Outbox
from mfa_service.recovery import routes as recovery_routes
from mfa_service.recovery import service as recovery
from mfa_service.redis_client import create_redis, redis_kind
from mfa_service.secretbox import SecretBox, load_secret_box
from mfa_service.services import Services
from mfa_service.sessions import routes as sessions_routes
from mfa_service.tokens import routes as tokens_routes
from mfa_service.tokens.keys import KeyStore, ensure_key
from mfa_service.webhooks import delivery as webhooks

logger = logging.getLogger("mfa_service")

try:
    VERSION = version("mfa-service")
except PackageNotFoundError:  # run from a source tree that was never installed
    VERSION = "0+unknown"

DESCRIPTION = """
Passwords and second factors; signed JWTs only after the required factors are proven.

Other services verify access tokens offline against `/.well-known/jwks.json`.
Errors are `application/problem+json` (RFC 9457) with a stable `code` (each operation lists
the codes it can answer); every 429 and 503 carries `Retry-After` in seconds.
Click **Authorize** and paste an `access_token` to call the protected routes.
"""

TAGS = [
    {
        "name": "accounts",
        "description": "Registration, password login, reauthentication, the password, the "
        "caller's account and security events.",
    },
    {
        "name": "mfa",
        "description": "The MFA challenge after a password login, step-up, TOTP enrolment "
        "and removal, backup codes.",
    },
    {
        "name": "webauthn",
        "description": "Security keys and passkeys (W3C JSON forms, for "
        "`PublicKeyCredential.parse*OptionsFromJSON()` and `credential.toJSON()`), and "
        "passwordless login with a passkey.",
    },
    {
        "name": "sessions",
        "description": "Rotating refresh tokens and logout.",
    },
    {
        "name": "introspection",
        "description": "RFC 7662: for configured services that must know at once whether an "
        "access token is still active.",
    },
    {
        "name": "discovery",
        "description": "The public signing keys and the discovery document, for services "
        "that verify access tokens offline.",
    },
    {"name": "health", "description": "Liveness and readiness probes."},
]


async def prepare_storage(
    engine: AsyncEngine, box: SecretBox, settings: Settings, clock: Clock
) -> None:
    """The embedded SQLite schema upgraded (other databases must already be at head), and a
    signing key where development may make one."""
    if settings.is_sqlite:
        await migrations.upgrade(engine)
    else:
        await migrations.check_at_head(engine)
    async with create_sessionmaker(engine)() as db:
        await ensure_key(db, box, settings, clock)
        await db.commit()


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or Settings()
    clock = clock or SystemClock()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        box = load_secret_box(settings)
        engine = create_engine(settings)
        redis = create_redis(settings)
        hasher = PasswordHasher(settings)
        outbox = Outbox(engine, settings, clock)
        sender: webhooks.Sender | None = None
        try:
            await prepare_storage(engine, box, settings, clock)
            sessionmaker = create_sessionmaker(engine)
            keys = KeyStore(sessionmaker, box, settings, clock)
            await keys.reload()
            await open_pool(engine, settings)
            await hasher.start()
            limiter = AttemptLimiter(redis, clock)
            app.state.services = Services(
                settings=settings,
                clock=clock,
                engine=engine,
                sessionmaker=sessionmaker,
                statement_sessionmaker=create_statement_sessionmaker(engine),
                redis=redis,
                scripts=limiter.scripts,
                box=box,
                keys=keys,
                hasher=hasher,
                throttle=FactorThrottle(limiter, settings),
                login_limiter=LoginLimiter(limiter, settings),
                outbox=outbox,
            )
            mail.install(app.state.services)
            recovery.install(app.state.services)
            sender = webhooks.install(app.state.services)
            outbox.start()
            logger.info(
                "mfa-service ready: database %s, redis %s",
                engine.url.get_backend_name(),
                redis_kind(settings.redis_url),
            )
            if unserved := settings.unserved_mail_links:
                logger.warning(
                    "%s unset and the account page off: mailed links would point to a page "
                    "this service does not serve; set them to your front end's pages",
                    " and ".join(unserved),
                )
            yield
        finally:
            await outbox.stop()
            if sender is not None:
                await sender.close()
            hasher.close()
            await redis.aclose()
            await engine.dispose()

    app = FastAPI(
        title="mfa-service",
        version=VERSION,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        license_info={"name": "MIT", "identifier": "MIT"},
        # Readable operationIds (`login`, `setupTotp`): generated clients name methods after them.
        generate_unique_id_function=operation_id,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,  # ReDoc loads scripts and fonts from CDNs
        # Any route: HttpGuards refuses a large body before routing.
        responses=responses(PayloadTooLarge),
    )
    install_handlers(app)
    install_docs(app)
    # Added before CORS, so CORS wraps it: a cross-origin client can read the 413.
    app.add_middleware(HttpGuards, max_body_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["Retry-After", "WWW-Authenticate", "X-Request-ID"],
            max_age=600,
        )
    # Outermost: the request id, access log line and metrics see every answer (413s too).
    app.add_middleware(Observability)
    for router in (
        accounts_routes.router,
        recovery_routes.router,
        audit_routes.router,
        challenges_routes.router,
        factors_routes.router,
        webauthn_routes.router,
        introspection_routes.router,
        sessions_routes.router,
        devices_routes.router,
        tokens_routes.router,
        health_router,
        observability_routes.router,
    ):
        app.include_router(router)
    if settings.account_page_enabled:
        install_account_page(app)
    return app
