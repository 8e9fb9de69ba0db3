"""The browser test's plumbing: where Chromium is, the service behind the page, and the page's
JS functions (page.html) called from Python with a timeout of their own."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import CDPSession, Page

# What `apt-get install chromium` puts on PATH (Debian), then the usual other name.
CHROMIUM_NAMES = ("chromium", "chromium-browser")
# Generous for a loaded CI machine: a hang is reported as one, speed is never relied on.
STEP_TIMEOUT = 60.0
LAUNCH_TIMEOUT_MS = 120_000
PAGE_PATH = "/__browser_test__"
PAGE_HTML = (Path(__file__).parent / "page.html").read_text(encoding="utf-8")


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        if path := shutil.which(name):
            return path
    return None


@dataclass
class Service:
    """A running `mfa-service serve` at `origin`, its output in `log`."""

    origin: str
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError as e:
            return f"(no server log: {e})"


@dataclass
class BrowserPage:
    """The test page, its CDP session and the service behind it. `call`, `create` and `get`
    run the page's own JS functions (page.html) and return their JSON."""

    page: Page
    cdp: CDPSession
    service: Service

    async def run(self, function: str, *args: Any) -> Any:
        try:
            async with asyncio.timeout(STEP_TIMEOUT):
                return await self.page.evaluate(f"(args) => {function}(...args)", list(args))
        except TimeoutError:
            pytest.fail(f"{function}() did not settle within {STEP_TIMEOUT} s", pytrace=False)

    async def call(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> dict[str, Any]:
        """The page's `fetch` of the service: {status, contentType, cacheControl, body, text}."""
        result: dict[str, Any] = await self.run("call", method, path, body, token)
        assert result["ok"], f"{method} {path}: {result}\n{self.service.log_tail()}"
        return result

    def expect(self, response: dict[str, Any], status: int, what: str) -> Any:
        """The JSON body of `response` after checking its status."""
        assert response["status"] == status, (
            f"{what}: {response['status']} {response['text']}\n"
            f"server log (tail):\n{self.service.log_tail()}"
        )
        return response["body"]

    async def create(self, options: Any) -> dict[str, Any]:
        """{ok, credential: RegistrationResponseJSON} or {ok: false, stage, error}."""
        result: dict[str, Any] = await self.run("create", options)
        return result

    async def get(self, options: Any) -> dict[str, Any]:
        """{ok, credential: AuthenticationResponseJSON} or {ok: false, stage, error}."""
        result: dict[str, Any] = await self.run("get", options)
        return result

    async def add_authenticator(self, transport: str) -> str:
        return await add_authenticator(self.cdp, transport)

    async def remove_authenticator(self, authenticator_id: str) -> None:
        await remove_authenticator(self.cdp, authenticator_id)

    async def stored_credentials(self, authenticator_id: str) -> list[dict[str, Any]]:
        """What the authenticator holds (CDP `Credential`s: ids in standard base64)."""
        got = await self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})
        credentials: list[dict[str, Any]] = got["credentials"]
        return credentials


async def add_authenticator(cdp: CDPSession, transport: str) -> str:
    """A CDP virtual CTAP2 authenticator that holds discoverable credentials and verifies its
    user; its id."""
    options = {
        "protocol": "ctap2",
        "transport": transport,
        "hasResidentKey": True,
        "hasUserVerification": True,
        "isUserVerified": True,
        "automaticPresenceSimulation": True,
    }
    added = await cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})
    authenticator_id: str = added["authenticatorId"]
    return authenticator_id


async def remove_authenticator(cdp: CDPSession, authenticator_id: str) -> None:
    await cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": authenticator_id})
