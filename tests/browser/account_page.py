"""The account page (/account/) driven like a person drives it: labels, buttons, the keyboard.
Plumbing for tests/browser/test_account_page.py: the page and what it requested, the
authenticator app (pyotp on the secret the page shows), the axe-core engine from npm, and the
screenshots kept as test artifacts."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyotp
import pytest
from playwright.async_api import CDPSession, Locator, Page, expect

from tests.browser import chromium
from tests.browser.chromium import STEP_TIMEOUT, Service
from tests.support import REQUIRE_SERVICES, command_must_succeed

ROOT = Path(__file__).resolve().parents[2]
AXE_PROJECT = Path(__file__).parent / "axe"
# Screenshots of each step; the folder is in .gitignore. MFA_TEST_ARTIFACTS moves it (CI).
ARTIFACTS = Path(os.environ.get("MFA_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "account-page"
# Bounds that stop a hung npm; they do not measure the machine.
NPM_TIMEOUT = 900
EXPECT_TIMEOUT_MS = STEP_TIMEOUT * 1000
# axe-core's impact levels that fail the test.
BLOCKING_IMPACTS = {"serious", "critical"}
# Chromium logs every non-2xx fetch answer as a console error; the page expects those.
EXPECTED_CONSOLE = re.compile(r"^Failed to load resource: the server responded with a status")
TOTP_PERIOD = 30

saved_artifacts: list[Path] = []  # for the terminal summary (conftest)


@dataclass
class AccountPage:
    """The page at `service.origin + /account/`, every request it made, and its problems."""

    page: Page
    cdp: CDPSession
    service: Service
    shots: Path
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    step: int = 0

    @property
    def url(self) -> str:
        return f"{self.service.origin}/account/"

    async def open(self) -> None:
        await self.page.goto(self.url)
        await expect(self.page.locator("main")).to_be_visible()

    async def shot(self, name: str) -> Path:
        self.step += 1
        path = self.shots / f"{self.step:02d}-{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path

    def labelled(self, label: str) -> Locator:
        return self.page.get_by_label(label, exact=True)

    def button(self, name: str) -> Locator:
        return self.page.get_by_role("button", name=name, exact=True)

    async def fill(self, label: str, value: str) -> None:
        await self.labelled(label).fill(value)

    async def click(self, name: str) -> None:
        await self.button(name).click()

    async def expect_notice(self, text: str | re.Pattern[str]) -> None:
        await expect(self.page.locator("#notice")).to_have_text(text, timeout=EXPECT_TIMEOUT_MS)

    async def expect_problem(self, text: str | re.Pattern[str]) -> None:
        await expect(self.page.locator("#problem-text")).to_have_text(
            text, timeout=EXPECT_TIMEOUT_MS
        )

    async def expect_signed_in(self, email: str) -> None:
        await expect(self.page.locator("#whoami")).to_have_text(
            f"Signed in as {email}", timeout=EXPECT_TIMEOUT_MS
        )
        await expect(self.page.locator("#problem")).to_be_hidden()

    async def expect_signed_out(self) -> None:
        await expect(self.page.locator("#signed-out")).to_be_visible(timeout=EXPECT_TIMEOUT_MS)
        await expect(self.page.locator("#whoami")).to_be_hidden()

    async def add_authenticator(self, transport: str) -> str:
        return await chromium.add_authenticator(self.cdp, transport)

    async def remove_authenticator(self, authenticator_id: str) -> None:
        await chromium.remove_authenticator(self.cdp, authenticator_id)

    def foreign_requests(self) -> list[str]:
        """Requests to any origin but the service's own. data: and blob: URLs are the page's
        own memory (the QR image the API answered, the downloaded codes): no network."""
        own = urlsplit(self.service.origin)
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme not in ("data", "blob")
            and (urlsplit(url).scheme, urlsplit(url).netloc) != (own.scheme, own.netloc)
        ]

    def unexpected_console(self) -> list[str]:
        return [text for text in self.console_errors if not EXPECTED_CONSOLE.match(text)]


@dataclass
class AuthenticatorApp:
    """What a phone's authenticator app does with the secret the page shows: the code of the
    current 30 s step. The service refuses a step used before (replay), so each code is of a
    later step than the last; when none is left in the accepted window, wait for the next."""

    secret: str
    last_step: int = -1

    async def code(self) -> str:
        while True:
            now = int(time.time()) // TOTP_PERIOD
            # The service accepts one step either side of its own: the current step, or the
            # next one, stays valid for at least 30 s after it is typed.
            for step in (now, now + 1):
                if step > self.last_step:
                    self.last_step = step
                    return pyotp.TOTP(self.secret).at(step * TOTP_PERIOD)
            await asyncio.sleep((now + 1) * TOTP_PERIOD - time.time() + 0.5)


# --- axe-core, installed from its pinned npm package ------------------------------------------


def install_axe(workdir: Path) -> str:
    """axe.min.js from `npm ci` in a temporary copy of tests/browser/axe (the checkout gets no
    node_modules; the product never ships it)."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        reason = f"{', '.join(missing)} not on PATH: install Node.js with npm (axe-core scan)"
        if REQUIRE_SERVICES:
            pytest.fail(f"MFA_TEST_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(AXE_PROJECT / name, workdir / name)
    npm_ci = ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--prefer-offline"]
    command_must_succeed(npm_ci, workdir, NPM_TIMEOUT)
    return (workdir / "node_modules" / "axe-core" / "axe.min.js").read_text(encoding="utf-8")


async def axe_violations(page: Page, axe_source: str) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.x A/AA rules on the page as it is now: the serious and critical
    violations. Evaluated through CDP, which the page's CSP (script-src 'self') does not
    govern; the page itself never loads it."""
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.evaluate(axe_source)
    result: dict[str, Any] = await page.evaluate(
        """async () => {
          const tags = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"];
          const r = await window.axe.run(document, {runOnly: {type: "tag", values: tags}});
          return {passes: r.passes.length, violations: r.violations.map((v) => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map((n) => n.target.join(" ")),
          }))};
        }"""
    )
    assert result["passes"] > 0, f"axe-core checked nothing: {result}"
    return [v for v in result["violations"] if v["impact"] in BLOCKING_IMPACTS]
