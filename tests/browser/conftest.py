"""Debian's Chromium (never a browser build of playwright's own), headless, driven by the
playwright package, with CDP virtual authenticators, on a page served at the origin of a real
`mfa-service serve`: the page's `fetch` calls reach the service itself, same origin."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Route, async_playwright

from mfa_service.config import Settings
from mfa_service.secretbox import generate_data_key
from tests.browser.chromium import (
    CHROMIUM_NAMES,
    LAUNCH_TIMEOUT_MS,
    PAGE_HTML,
    PAGE_PATH,
    STEP_TIMEOUT,
    BrowserPage,
    Service,
    find_chromium,
)
from tests.serve import serving
from tests.support import REQUIRE_SERVICES, clean_redis, fallback, free_port, postgres_database


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    path = find_chromium()
    if path is None:
        reason = f"no Chromium executable on PATH ({', '.join(CHROMIUM_NAMES)}): "
        reason += "`apt-get install chromium` (Debian) runs the browser tests"
        if REQUIRE_SERVICES:
            pytest.fail(f"MFA_TEST_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return path


@pytest.fixture
def browser_database_url(tmp_path: Path) -> Iterator[str]:
    """A fresh migrated PostgreSQL database when MFA_TEST_DATABASE_URL is set, else SQLite
    (which the server migrates itself)."""
    with postgres_database() as url:
        if url is None:
            fallback("MFA_TEST_DATABASE_URL is not set: the browser test runs on SQLite")
            yield f"sqlite+aiosqlite:///{tmp_path / 'mfa.db'}"
            return
        yield url


@pytest.fixture
async def service(
    redis_url: str | None,
    browser_database_url: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Service]:
    """`mfa-service serve` whose issuer, RP ID and WebAuthn origin are http://localhost:PORT:
    a secure context for the browser without TLS. More MFA_ settings: parametrize `service`
    indirectly with a dict of them."""
    port = free_port()
    origin = f"http://localhost:{port}"
    prefix = f"mfa-browser-{uuid.uuid4().hex[:8]}:"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFA_")}
    env.update(
        MFA_DATABASE_URL=browser_database_url,
        MFA_DATA_DIR=str(tmp_path / "data"),
        MFA_DATA_KEY=generate_data_key(),
        MFA_ISSUER=origin,
        MFA_WEBAUTHN_RP_ID="localhost",
        MFA_WEBAUTHN_ORIGINS=origin,
    )
    env.update(getattr(request, "param", {}))
    if redis_url is not None:
        env.update(MFA_REDIS_URL=redis_url, MFA_REDIS_PREFIX=prefix)
    log = tmp_path / "server.log"
    try:
        async with serving(env, port, log):
            yield Service(origin, log)
    finally:
        await clean_redis(Settings(redis_url=redis_url, redis_prefix=prefix))


@pytest.fixture
async def chromium(chromium_executable: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium_executable,
            headless=True,
            # Root (CI) cannot use Chromium's sandbox; the page is our own.
            args=["--no-sandbox"],
            timeout=LAUNCH_TIMEOUT_MS,
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def browser_page(chromium: Browser, service: Service) -> AsyncIterator[BrowserPage]:
    context = await chromium.new_context()
    try:
        page = await context.new_page()
        page.set_default_timeout(STEP_TIMEOUT * 1000)
        cdp = await context.new_cdp_session(page)
        await cdp.send("WebAuthn.enable")

        async def fulfil(route: Route) -> None:
            await route.fulfill(status=200, content_type="text/html; charset=utf-8", body=PAGE_HTML)

        url = service.origin + PAGE_PATH
        await page.route(url, fulfil)
        await page.goto(url)
        browser_page = BrowserPage(page, cdp, service)
        environment = await browser_page.run("environment")
        assert environment == {
            "origin": service.origin,
            "secureContext": True,
            "publicKeyCredential": True,
            "parseCreationOptionsFromJSON": True,
            "parseRequestOptionsFromJSON": True,
        }, f"Chromium {chromium.version}: {environment}"
        yield browser_page
    finally:
        await context.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Where the account page's screenshots went (tests/browser/test_account_page.py)."""
    from tests.browser.account_page import saved_artifacts

    for folder in dict.fromkeys(saved_artifacts):
        terminalreporter.write_line(f"account page screenshots: {folder}")
