from __future__ import annotations

import re

import httpx


async def test_swagger_ui_uses_only_local_assets(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert urls, "no assets found"
    for url in urls:
        assert url.startswith("/"), f"external asset {url}"
        asset = await client.get(url)
        assert asset.status_code == 200, url
    assert "cdn." not in page.text
    assert "fastapi.tiangolo.com" not in page.text


async def test_openapi_documents_errors_and_the_bearer_scheme(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"]
    assert any(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes.values())
    login = schema["paths"]["/auth/login"]["post"]
    assert "401" in login["responses"]
    assert "application/problem+json" in login["responses"]["401"]["content"]
    me = schema["paths"]["/users/me"]["get"]
    assert me.get("security"), "/users/me must declare the bearer scheme"
    assert "401" in me["responses"]


async def test_errors_are_problem_json(client: httpx.AsyncClient) -> None:
    r = await client.get("/no/such/path")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert set(r.json()) >= {"type", "title", "status", "detail", "code"}
    bad = await client.post("/auth/login", json={"email": "a@example.com", "password": 12345678})
    assert bad.status_code == 422
    assert "12345678" not in bad.text
