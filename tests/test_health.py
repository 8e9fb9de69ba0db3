from __future__ import annotations

import httpx
import pytest

from tests.support import (
    Backend,
    bearer,
    registered_login,
    running_app,
    settings_for,
    unreachable_redis_url,
)

pytestmark = pytest.mark.redis_cluster


async def test_healthz_and_readyz(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}


async def test_redis_unreachable_means_503_not_access(backend: Backend) -> None:
    async with running_app(settings_for(backend)) as working:
        _, tokens = await registered_login(working)
    down = settings_for(backend, redis_url=unreachable_redis_url(backend))
    async with running_app(down) as client:
        assert (await client.get("/healthz")).status_code == 200
        r = await client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["code"] == "service_unavailable"
        # The logout deny list cannot be read: refuse rather than let the token through.
        me = await client.get("/users/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 503
        assert me.headers["content-type"] == "application/problem+json"
