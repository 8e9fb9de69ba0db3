"""The account page's files (issue #17): where they are served, when, with which headers, and
that they ship in the wheel. The page's behaviour is tested in Chromium
(tests/browser/test_account_page.py)."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest

from mfa_service.account_page.site import CONTENT_SECURITY_POLICY
from mfa_service.app import create_app
from mfa_service.config import Settings
from mfa_service.secretbox import generate_data_key
from tests.support import Backend, FakeClock, running_app, settings_for

ROOT = Path(__file__).resolve().parents[2]
STATIC = Path(str(resources.files("mfa_service.account_page").joinpath("static")))
PRODUCTION = {
    "env": "production",
    "data_key": generate_data_key(),
    # Never connected: these tests do not run the lifespan.
    "redis_url": "redis://127.0.0.1:1/0",
    "database_url": "postgresql+asyncpg://nobody@127.0.0.1:1/none",
}
WHEEL_TIMEOUT = 600


@pytest.mark.parametrize(
    ("env", "value", "enabled"),
    [
        ({}, None, True),
        ({}, "false", False),
        (PRODUCTION, None, False),
        (PRODUCTION, "true", True),
    ],
)
async def test_on_in_development_off_in_production_unless_asked(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    env: dict[str, str],
    value: str | None,
    enabled: bool,
) -> None:
    if value is not None:
        monkeypatch.setenv("MFA_ACCOUNT_PAGE", value)
    settings = Settings(data_dir=tmp_path, **env)  # type: ignore[arg-type]
    assert settings.account_page_enabled is enabled
    # The static mount needs no storage: no lifespan here.
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://mfa.test") as client:
        page = await client.get("/account/")
    assert page.status_code == (200 if enabled else 404), page.text
    if not enabled:
        assert page.headers["content-type"] == "application/problem+json"


def assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


async def test_served_from_package_files_with_strict_headers(client: httpx.AsyncClient) -> None:
    moved = await client.get("/account")
    assert moved.status_code in (307, 308)
    assert moved.headers["location"].endswith("/account/")
    page = await client.get("/account/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.text == (STATIC / "index.html").read_text(encoding="utf-8")
    urls = [url for url in assets(page.text) if not url.startswith("data:")]
    assert set(urls) == {"account.css", "account.js"}, urls
    for response in [page, *[await client.get(f"/account/{url}") for url in urls]]:
        assert response.status_code == 200, response.url
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-cache"
    policy = dict(part.split(" ", 1) for part in CONTENT_SECURITY_POLICY.split("; "))
    assert policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    script = await client.get("/account/account.js")
    assert script.headers["content-type"].startswith("text/javascript")
    missing = await client.get("/account/nothing.js")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


async def test_the_mailed_links_open_the_page(client: httpx.AsyncClient, tmp_path: Path) -> None:
    """MFA_PASSWORD_RESET_URL and MFA_EMAIL_VERIFY_URL default to views of this page: the
    same document, whose relative assets still resolve under /account/."""
    settings = Settings(data_dir=tmp_path, issuer="http://mfa.test")
    index = (STATIC / "index.html").read_text(encoding="utf-8")
    for link in (settings.effective_password_reset_url, settings.effective_email_verify_url):
        page = await client.get(f"{link}?token=abc")
        assert page.status_code == 200, link
        assert page.text == index
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert page.headers["referrer-policy"] == "no-referrer"  # the token stays here
        for url in assets(page.text):
            if not url.startswith("data:"):
                assert (await client.get(str(page.url.join(url)))).status_code == 200, url
    assert (await client.get("/account/reset-password/x")).status_code == 404


@pytest.mark.parametrize(
    ("overrides", "unserved"),
    [
        ({"account_page": True}, []),
        ({"account_page": False}, ["MFA_PASSWORD_RESET_URL", "MFA_EMAIL_VERIFY_URL"]),
        (
            {"account_page": False, "password_reset_url": "https://app.example/reset"},
            ["MFA_EMAIL_VERIFY_URL"],
        ),
    ],
)
async def test_links_to_a_page_that_is_off_are_warned_about_at_start(
    backend: Backend,
    caplog: pytest.LogCaptureFixture,
    overrides: dict[str, Any],
    unserved: list[str],
) -> None:
    with caplog.at_level(logging.WARNING, logger="mfa_service"):
        async with running_app(settings_for(backend, **overrides), FakeClock()) as client:
            assert (await client.get("/healthz")).status_code == 200
    warned = [r.getMessage() for r in caplog.records if "mailed links" in r.getMessage()]
    if not unserved:
        assert warned == []
        return
    [line] = warned
    assert line.startswith(" and ".join(unserved) + " unset and the account page off")


async def test_no_inline_script_or_style_and_nothing_from_elsewhere() -> None:
    """What the CSP would refuse, refused here too, so a mistake shows in a test and not as a
    dead button in production."""
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == [], "inline <script>"
    assert "<style" not in html
    assert re.findall(r"\sstyle=", html) == []
    assert re.findall(r"\son[a-z]+=", html) == [], "inline event handler"
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"https?://", text), f"{path.name} names another origin"
        if path.suffix == ".js":
            assert ".innerHTML" not in text, f"{path.name}: build the DOM with textContent"
            assert "localStorage" not in text, f"{path.name}: tokens stay out of localStorage"


async def test_not_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert not [path for path in document["paths"] if path.startswith("/account")]


def test_the_wheel_ships_the_page(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=WHEEL_TIMEOUT,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("mfa_service-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"mfa_service/account_page/static/{path.name}" for path in STATIC.iterdir()}
    assert shipped <= names, sorted(shipped - names)
    assert {"index.html", "api.js", "account.js", "messages.js", "account.css"} <= {
        path.name for path in STATIC.iterdir()
    }
