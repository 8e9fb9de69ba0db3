"""A request that cannot get a database connection in time is refused with 503, not 500."""

from __future__ import annotations

import httpx

from mfa_service.app import create_app
from tests.support import PASSWORD, Backend, FakeClock, clean_redis, new_email, settings_for


async def test_exhausted_connection_pool_answers_503(backend: Backend, clock: FakeClock) -> None:
    settings = settings_for(backend, database_pool_size=1, database_pool_timeout=0.3)
    app = create_app(settings, clock)
    transport = httpx.ASGITransport(app=app)
    try:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=transport, base_url="http://mfa.test") as c:
                engine = app.state.services.engine
                # Something else holds the pool's only connection (opening one checks it out,
                # no transaction needed).
                async with engine.connect():
                    body = {"email": new_email(), "password": PASSWORD}
                    r = await c.post("/auth/register", json=body)
                    assert r.status_code == 503, r.text
                    assert r.headers["content-type"] == "application/problem+json"
                    assert r.json()["code"] == "service_unavailable"
                    assert int(r.headers["retry-after"]) >= 1
                # Connections back: the same request works.
                r = await c.post("/auth/register", json=body)
                assert r.status_code == 201, r.text
    finally:
        await clean_redis(settings)
