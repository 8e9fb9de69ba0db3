"""Issue #17: the account page at /account/, in headless Chromium against `mfa-service serve` on
real Redis, clicked and typed like a person: every flow, the QR code decoded, TOTP codes from
the secret the page shows, security keys and passkeys through CDP virtual authenticators, the
axe-core scan, and no request to any origin but the service's own."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import shutil
import time
from collections.abc import AsyncIterator, Collection
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import cv2
import httpx
import numpy as np
import pytest
from playwright.async_api import Browser, ConsoleMessage, Locator, Request, expect

from mfa_service.errors import ServiceError
from tests.browser.account_page import (
    ARTIFACTS,
    EXPECT_TIMEOUT_MS,
    AccountPage,
    AuthenticatorApp,
    axe_violations,
    install_axe,
    saved_artifacts,
)
from tests.browser.chromium import STEP_TIMEOUT, Service
from tests.support import PASSWORD, bearer, new_email

BACKUP_CODE = re.compile(r"^[A-Za-z0-9-]{8,}$")


@pytest.fixture(scope="session")
def axe_source(tmp_path_factory: pytest.TempPathFactory) -> str:
    return install_axe(tmp_path_factory.mktemp("axe"))


@pytest.fixture
async def account(
    chromium: Browser, service: Service, request: pytest.FixtureRequest
) -> AsyncIterator[AccountPage]:
    """A fresh browser profile on /account/; every request the page makes is recorded, and
    the test fails on one to another origin, or on a script error (a CSP refusal included)."""
    shots = ARTIFACTS / request.node.name
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    saved_artifacts.append(shots)
    context = await chromium.new_context(
        accept_downloads=True, viewport={"width": 1000, "height": 900}
    )
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=service.origin)
    try:
        page = await context.new_page()
        page.set_default_timeout(STEP_TIMEOUT * 1000)
        cdp = await context.new_cdp_session(page)
        await cdp.send("WebAuthn.enable")
        account = AccountPage(page, cdp, service, shots)

        def requested(r: Request) -> None:
            account.requests.append(r.url)

        def console(message: ConsoleMessage) -> None:
            if message.type == "error":
                account.console_errors.append(message.text)

        context.on("request", requested)
        page.on("console", console)
        page.on("pageerror", lambda error: account.console_errors.append(str(error)))
        await account.open()
        yield account
        assert account.requests, "the page made no request at all"
        assert account.foreign_requests() == [], "requests to another origin"
        assert account.unexpected_console() == [], "script errors on the page"
    finally:
        await context.close()


async def qr_payload(account: AccountPage) -> str:
    """The QR code as the screen shows it, read by OpenCV's decoder."""
    png = await account.page.locator("#totp-qr").screenshot()
    image = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image is not None, "the screenshot is not an image"
    text, _, _ = cv2.QRCodeDetector().detectAndDecode(image)
    assert text, "no QR code could be read from the screenshot"
    return str(text)


async def shown_codes(account: AccountPage) -> list[str]:
    await expect(account.page.locator("#backup-codes")).to_be_visible()
    codes = await account.page.locator("#backup-list li").all_text_contents()
    assert len(codes) == 10, codes
    assert all(BACKUP_CODE.match(code) for code in codes), codes
    return codes


async def no_blocking_violations(account: AccountPage, axe_source: str, where: str) -> None:
    violations = await axe_violations(account.page, axe_source)
    assert violations == [], f"axe-core, {where}: {violations}"


def challenge_code(account: AccountPage) -> Locator:
    return account.page.locator("#challenge").get_by_label("Code from your authenticator app")


async def log_in(account: AccountPage, email: str, password: str = PASSWORD) -> None:
    form = account.page.locator("#login-form")
    await form.get_by_label("Email").fill(email)
    await form.get_by_label("Password").fill(password)
    await account.click("Log in")


async def answer_step_up(account: AccountPage, app: AuthenticatorApp, axe_source: str) -> None:
    dialog = account.page.get_by_role("dialog", name="Confirm it is you")
    await expect(dialog).to_be_visible()
    # Focus is in the dialog, on its first field.
    await expect(dialog.get_by_label("Code from your authenticator app")).to_be_focused()
    await account.shot("step-up")
    await no_blocking_violations(account, axe_source, "the step-up dialog")
    await dialog.get_by_label("Code from your authenticator app").fill(await app.code())
    await dialog.get_by_role("button", name="Confirm with code").click()
    await expect(dialog).to_be_hidden(timeout=EXPECT_TIMEOUT_MS)


async def test_every_flow_of_the_account_page(account: AccountPage, axe_source: str) -> None:
    page = account.page
    email = new_email()

    # Signed out: log in, passkey, create an account.
    await account.expect_signed_out()
    await account.shot("signed-out")
    await no_blocking_violations(account, axe_source, "signed out")

    # 1. Register: the page logs the new account in.
    register = page.locator("#register-form")
    await register.get_by_label("Email").fill(email)
    await register.get_by_label("Password").fill(PASSWORD)
    await account.click("Create account")
    await account.expect_signed_in(email)
    await account.expect_notice("Your account is ready and you are logged in.")
    await expect(page.locator("#mfa-summary")).to_contain_text("Off")
    await account.shot("registered")

    # 2. TOTP: the QR code and the secret for manual entry; the QR holds the otpauth URI the
    # API answered, with the secret shown.
    async with page.expect_response("**/mfa/totp/setup") as setup_response:
        await account.click("Set up an authenticator app")
    setup = await (await setup_response.value).json()
    await expect(page.locator("#totp-enroll")).to_be_visible()
    await account.shot("totp-setup")
    shown_secret = (await page.locator("#totp-secret").text_content() or "").replace(" ", "")
    assert shown_secret == setup["secret"]
    uri = await qr_payload(account)
    assert uri == setup["otpauth_uri"]
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == f"/mfa-service:{email}"
    assert parse_qs(parts.query)["secret"] == [shown_secret]
    assert parse_qs(parts.query)["issuer"] == ["mfa-service"]
    await expect(account.labelled("The 6-digit code your app shows now")).to_be_focused()
    await no_blocking_violations(account, axe_source, "TOTP enrolment")

    # A wrong code first: a readable problem, and nothing changes.
    app = AuthenticatorApp(shown_secret)
    await account.fill("The 6-digit code your app shows now", "000000")
    await account.click("Turn on the authenticator app")
    await account.expect_problem(re.compile("That code is wrong"))
    await account.fill("The 6-digit code your app shows now", await app.code())
    await account.click("Turn on the authenticator app")
    await account.expect_notice("The authenticator app is on.")
    await expect(page.locator("#totp-state")).to_have_text("Status: on.")
    await expect(page.locator("#totp-enroll")).to_be_hidden()

    # 3. Backup codes, shown once: copy, download, then gone.
    codes = await shown_codes(account)
    await expect(page.locator("#backup-codes")).to_be_focused()
    await account.shot("backup-codes")
    await no_blocking_violations(account, axe_source, "backup codes shown")
    await account.click("Copy codes")
    await account.expect_notice("Backup codes copied.")
    assert (await page.evaluate("navigator.clipboard.readText()")).split() == codes
    async with page.expect_download() as download_info:
        await account.click("Download codes")
    download = await download_info.value
    assert download.suggested_filename == "mfa-service-backup-codes.txt"
    assert Path(await download.path()).read_text().split() == codes
    await account.click("I have saved them")
    await expect(page.locator("#backup-codes")).to_be_hidden()
    assert await page.locator("#backup-list li").count() == 0
    await expect(page.locator("#backup-state")).to_have_text("10 unused backup codes left.")
    # A reload signs in again from the refresh token in sessionStorage; the codes are gone.
    await page.reload()
    await account.expect_signed_in(email)
    await account.expect_notice("Welcome back.")
    assert await page.locator("#backup-list li").count() == 0
    assert codes[0] not in await page.content()
    stored = await page.evaluate("() => Object.keys(sessionStorage)")
    assert stored == ["mfa-service.refresh_token"], stored
    assert await page.evaluate("() => localStorage.length") == 0

    # 4. A security key. This session's token proves only the password (MFA came after it):
    # the service asks for a step-up, the page shows it, then retries.
    usb = await account.add_authenticator("usb")
    await account.fill("Name (so you can tell them apart)", "Blue key")
    await account.click("Add")
    await answer_step_up(account, app, axe_source)
    await account.expect_notice("Added Blue key.")
    keys = page.locator("#key-list > li")
    await expect(keys).to_have_count(1)
    await expect(keys.first).to_contain_text("Blue key")
    await expect(keys.first).to_contain_text("Security key")
    await account.shot("security-key-added")

    # Rename it.
    await account.fill("New name for Blue key", "Office key")
    await account.click("Rename")
    await account.expect_notice("Renamed.")
    await expect(keys.first.locator("strong")).to_have_text("Office key")

    # 5. Log out; the refresh token leaves sessionStorage.
    await account.click("Log out")
    await account.expect_signed_out()
    await account.expect_notice("You are logged out.")
    assert await page.evaluate("() => sessionStorage.length") == 0

    # 6. Password, then the security key answers the challenge.
    await log_in(account, email)
    await expect(page.locator("#challenge")).to_be_visible()
    await expect(challenge_code(account)).to_be_focused()
    await account.shot("challenge")
    await no_blocking_violations(account, axe_source, "challenge")
    await account.click("Use a security key or passkey")
    await account.expect_signed_in(email)
    await expect(page.locator("#session-list")).to_contain_text("Verified with: password, two-step")
    await account.click("Log out")
    await account.expect_signed_out()

    # 7. Password, then a TOTP code.
    await log_in(account, email)
    await challenge_code(account).fill(await app.code())
    await account.click("Verify code")
    await account.expect_signed_in(email)
    await expect(page.locator("#session-list")).to_contain_text("authenticator app")
    await account.click("Log out")
    await account.expect_signed_out()

    # 8. Password, then a backup code: one fewer left.
    await log_in(account, email)
    await account.fill("Backup code", codes[0])
    await account.click("Use backup code")
    await account.expect_signed_in(email)
    await expect(page.locator("#backup-state")).to_have_text("9 unused backup codes left.")

    # 9. New backup codes with a code from the app: ten, none of the old ones.
    await account.fill("A code from your authenticator app", await app.code())
    await account.click("Make new backup codes")
    await account.expect_notice("New backup codes made; the old ones no longer work.")
    new_codes = await shown_codes(account)
    assert not set(new_codes) & set(codes)
    await account.click("I have saved them")
    await expect(page.locator("#backup-state")).to_have_text("10 unused backup codes left.")

    # 10. A passkey on the platform authenticator (the USB key unplugged: the options exclude
    # it, and a browser with it plugged in would refuse).
    await account.remove_authenticator(usb)
    await account.add_authenticator("internal")
    await account.fill("Name (so you can tell them apart)", "Laptop passkey")
    await page.get_by_label("Passkey (log in without a password)").check()
    await account.click("Add")
    await account.expect_notice("Added Laptop passkey.")
    await expect(keys).to_have_count(2)
    await expect(page.locator("#key-list")).to_contain_text("Passkey")
    await account.click("Log out")
    await account.expect_signed_out()

    # 11. Passwordless: the passkey alone.
    await account.click("Log in with a passkey")
    await account.expect_signed_in(email)
    await account.expect_notice("You are logged in with your passkey.")

    # 12. Sessions: one more, elsewhere (a backup code through the API); the page ends it.
    async with httpx.AsyncClient(base_url=account.service.origin, timeout=STEP_TIMEOUT) as api:
        login = await api.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        answered = await api.post(
            "/mfa/challenge",
            json={"challenge_token": login.json()["challenge_token"], "backup_code": new_codes[0]},
            headers={"User-Agent": "other-device/1.0"},
        )
        assert answered.status_code == 200, answered.text
        other = answered.json()["access_token"]
        assert (await api.get("/users/me", headers=bearer(other))).status_code == 200
        await page.reload()
        await account.expect_signed_in(email)
        sessions = page.locator("#session-list > li")
        await expect(sessions).to_have_count(2)
        await expect(page.locator("#session-list")).to_contain_text("This session")
        await account.shot("sessions")
        await page.get_by_role("button", name=re.compile(r"^End this session \(")).click()
        await account.expect_notice("Session ended: it is signed out.")
        await expect(sessions).to_have_count(1)
        assert (await api.get("/users/me", headers=bearer(other))).status_code == 401

    # 13. Security events, newest first, ten a page, "older" until the last page.
    rows = page.locator("#events-body tr")
    await expect(rows).to_have_count(10)
    await expect(rows.first).to_contain_text(re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"))
    more = page.locator("#events-more")  # "Show older events"; hidden on the last page
    pages = 1
    while await more.is_visible():
        before = await rows.count()
        await more.click()
        await expect(more).to_be_enabled()
        assert await rows.count() > before, "a next_cursor that led to no events"
        pages += 1
    assert pages >= 2, "expected more than one page of events"
    texts = await rows.all_text_contents()
    for kind in ("totp.enabled", "webauthn.registered", "backup_codes.regenerated", "logout"):
        assert any(kind in text for text in texts), (kind, texts)
    await account.shot("events")

    # 14. Remove the passkey (the passkey login is recent enough).
    await account.click("Remove Laptop passkey")
    await account.expect_notice("Removed Laptop passkey.")
    await expect(keys).to_have_count(1)
    await account.shot("account")
    await no_blocking_violations(account, axe_source, "signed in, everything shown")

    # 15. Turn the authenticator app off (password and a backup code); the key keeps MFA on.
    turn_off = page.locator("#totp-disable-form")
    await turn_off.get_by_label("Your password").fill(PASSWORD)
    await turn_off.get_by_label("A code from the app, or a backup code").fill(new_codes[1])
    await account.click("Turn off")
    await account.expect_notice("The authenticator app is off.")
    await expect(page.locator("#totp-state")).to_have_text("Status: off.")
    await expect(page.locator("#mfa-summary")).to_contain_text("On")

    await account.click("Log out")
    await account.expect_signed_out()


async def mailed_link(outbox: Path, to: str, view: str, seen: Collection[str] = ()) -> str:
    """The link of a mail to `to` that opens `view` and is not one of `seen`, as `mfa-service
    serve` with no SMTP server writes it: an .eml file in <data dir>/outbox/."""
    found = re.compile(rf"(http://\S+/account/{view}\?token=[A-Za-z0-9_-]+)")
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        for path in outbox.glob("*.eml"):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            body = message.get_body(preferencelist=("plain",))
            link = found.search(body.get_content()) if body else None
            if message["To"] == to and link and link.group(1) not in seen:
                return link.group(1)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no mail to {to} with a {view} link in {outbox}")


async def test_recovery_and_verification_from_the_mailed_links(
    account: AccountPage, axe_source: str, tmp_path: Path
) -> None:
    """The links the service mails by default open views of this page: confirm the address,
    then a forgotten password reset with the second factor, as a person does it."""
    page = account.page
    address = new_email()
    outbox = tmp_path / "data" / "outbox"  # the `service` fixture's MFA_DATA_DIR

    register = page.locator("#register-form")
    await register.get_by_label("Email").fill(address)
    await register.get_by_label("Password").fill(PASSWORD)
    await account.click("Create account")
    await account.expect_signed_in(address)
    await expect(page.locator("#email-state")).to_have_text(f"{address}: not confirmed yet.")

    # Verification: asked for on the page, the link followed in the same tab.
    await account.click("Mail me a confirmation link")
    await account.expect_notice("A link to confirm the email address is on its way.")
    await page.goto(await mailed_link(outbox, address, "verify-email"))
    await expect(page.get_by_role("heading", name="Confirm your email address")).to_be_visible()
    assert page.url == account.url, "the token is still in the address bar"
    await account.shot("verify-email")
    await no_blocking_violations(account, axe_source, "the verification view")
    await account.click("Confirm my email address")
    await account.expect_signed_in(address)
    await account.expect_notice("Your email address is confirmed.")
    await expect(page.locator("#email-state")).to_have_text(f"{address}: confirmed.")
    await expect(account.button("Mail me a confirmation link")).to_be_hidden()

    # A second factor, so the reset must ask for it.
    await account.click("Set up an authenticator app")
    await expect(account.labelled("The 6-digit code your app shows now")).to_be_focused()
    secret = (await page.locator("#totp-secret").text_content() or "").replace(" ", "")
    app = AuthenticatorApp(secret)
    await account.fill("The 6-digit code your app shows now", await app.code())
    await account.click("Turn on the authenticator app")
    await account.expect_notice("The authenticator app is on.")
    await account.click("I have saved them")
    await account.click("Log out")
    await account.expect_signed_out()

    # Forgot the password: the same answer as for any email.
    await account.click("Forgot your password?")
    await expect(page.locator("#forgot-email")).to_be_focused()
    await page.locator("#forgot-form").get_by_label("Email").fill(address)
    await account.click("Mail me a link")
    await account.expect_notice(re.compile("^If an account has this email, a link"))
    link = await mailed_link(outbox, address, "reset-password")
    await page.goto(link)
    await expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    assert page.url == account.url, "the token is still in the address bar"
    new_password = "a brand new passphrase"
    await account.fill("New password", new_password)
    await account.click("Set the new password")
    # The account has MFA: the page asks for the factor, then the reset goes through.
    await account.expect_notice("One more step: your second factor.")
    factor = account.labelled("Code from your authenticator app, or a backup code")
    await expect(factor).to_be_focused()
    await account.shot("reset-password-factor")
    await no_blocking_violations(account, axe_source, "the reset view")
    await factor.fill("000000")
    await account.click("Set the new password")
    await account.expect_problem(re.compile("That code is wrong"))
    await factor.fill(await app.code())
    await account.click("Set the new password")
    await account.expect_signed_out()
    await account.expect_notice("Your password is changed. Log in with it.")

    # The old password is refused, the new one works (with the second factor).
    await log_in(account, address)
    await account.expect_problem("The email or password is incorrect.")
    await log_in(account, address, new_password)
    await challenge_code(account).fill(await app.code())
    await account.click("Verify code")
    await account.expect_signed_in(address)
    await expect(page.locator("#events-body")).to_contain_text("Password reset with a mailed link")
    await expect(page.locator("#events-body")).to_contain_text("Email address confirmed")

    # The link works once: opened again, it is refused, and the tab is back on the account.
    await page.goto(link)
    await account.fill("New password", "yet another passphrase")
    await account.click("Set the new password")
    await expect(page.locator("#whoami")).to_have_text(f"Signed in as {address}")
    await account.expect_problem(re.compile("This password-reset link is invalid, used"))
    # Opened and cancelled in a signed-in tab: back to the account.
    await page.goto(link)
    await account.click("Cancel")
    await expect(page.locator("#whoami")).to_have_text(f"Signed in as {address}")
    await expect(page.locator("#reset")).to_be_hidden()

    # A security key proves the second factor of a reset just as well.
    await account.add_authenticator("usb")
    await account.fill("Name (so you can tell them apart)", "Blue key")
    await account.click("Add")
    await account.expect_notice("Added Blue key.")
    await account.click("Log out")
    await account.expect_signed_out()
    await account.click("Forgot your password?")
    await page.locator("#forgot-form").get_by_label("Email").fill(address)
    await account.click("Mail me a link")
    await account.expect_notice(re.compile("^If an account has this email, a link"))
    newer = await mailed_link(outbox, address, "reset-password", seen={link})
    await page.goto(newer)
    await account.fill("New password", "the third passphrase")
    await account.click("Set the new password")
    await account.expect_notice("One more step: your second factor.")
    await account.click("Use a security key or passkey instead")
    await account.expect_notice("Your password is changed. Log in with it.")
    await log_in(account, address, "the third passphrase")
    await expect(challenge_code(account)).to_be_visible()


@pytest.mark.parametrize("service", [{"MFA_REQUIRE_MFA": "true"}], indirect=True)
async def test_enforced_enrollment(account: AccountPage, axe_source: str) -> None:
    """MFA_REQUIRE_MFA: a new account (and an old one without a factor) is led from the
    password to setting up a second factor, which logs it in."""
    page = account.page
    address = new_email()
    register = page.locator("#register-form")
    await register.get_by_label("Email").fill(address)
    await register.get_by_label("Password").fill(PASSWORD)
    await account.click("Create account")
    await expect(page.get_by_role("heading", name="Set up two-step verification")).to_be_visible()
    await expect(account.button("Set up an authenticator app")).to_be_focused()
    await account.shot("enroll")
    await no_blocking_violations(account, axe_source, "the enrollment view")

    await account.click("Set up an authenticator app")
    code_field = account.labelled("The code your app shows now")
    await expect(code_field).to_be_focused()
    secret = (await page.locator("#enroll-secret").text_content() or "").replace(" ", "")
    assert secret, "no secret shown"
    app = AuthenticatorApp(secret)
    await code_field.fill("000000")
    await account.click("Turn on and log in")
    await account.expect_problem(re.compile("That code is wrong"))
    await code_field.fill(await app.code())
    await account.click("Turn on and log in")
    await account.expect_signed_in(address)
    await account.expect_notice("Two-step verification is on, and you are logged in.")
    # The secret and its QR code do not stay in the page once they did their work.
    await expect(page.locator("#enroll-secret")).to_have_text("")
    assert await page.locator("#enroll-qr").get_attribute("src") is None
    await shown_codes(account)
    await account.click("I have saved them")
    await account.click("Log out")

    # A second account enrols with a security key instead.
    other = new_email()
    await register.get_by_label("Email").fill(other)
    await register.get_by_label("Password").fill(PASSWORD)
    await account.click("Create account")
    await account.add_authenticator("usb")
    await account.fill("Name (so you can tell it apart)", "Red key")
    await account.click("Add the security key and log in")
    await account.expect_signed_in(other)
    await account.expect_notice(
        "Added Red key. Two-step verification is on, and you are logged in."
    )
    await expect(page.locator("#key-list > li")).to_have_count(1)
    await shown_codes(account)


async def test_keyboard_only(account: AccountPage) -> None:
    """Create an account, set up TOTP, log out and back in with the keyboard alone; the focus
    order follows the page."""
    page = account.page
    email = new_email()

    async def focused() -> str:
        label: str = await page.evaluate(
            """() => {
              const e = document.activeElement;
              return e.labels?.[0]?.textContent.trim() || e.getAttribute("aria-label")
                || e.textContent.trim();
            }"""
        )
        return label

    async def tab_to(label: str, limit: int = 15) -> None:
        seen = []
        for _ in range(limit):
            await page.keyboard.press("Tab")
            seen.append(await focused())
            if seen[-1] == label:
                return
        pytest.fail(f"Tab never reached {label!r}: {seen}")

    async def shift_tab_to(label: str, limit: int = 30) -> None:
        seen = []
        for _ in range(limit):
            await page.keyboard.press("Shift+Tab")
            seen.append(await focused())
            if seen[-1] == label:
                return
        pytest.fail(f"Shift+Tab never reached {label!r}: {seen}")

    # The login email has the focus on arrival; Tab walks the forms in reading order.
    await expect(page.locator("#login-email")).to_be_focused()
    order = [await focused()]
    for _ in range(7):
        await page.keyboard.press("Tab")
        order.append(await focused())
    assert order == [
        "Email",
        "Password",
        "Log in",
        "Log in with a passkey",
        "Forgot your password?",
        "Email",
        "Password",
        "Create account",
    ]
    await page.keyboard.press("Shift+Tab")
    await page.keyboard.press("Shift+Tab")
    await page.keyboard.type(email)
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await account.expect_signed_in(email)
    await expect(page.locator("#mfa-heading")).to_be_focused()

    await tab_to("Set up an authenticator app")
    await page.keyboard.press("Enter")
    await expect(account.labelled("The 6-digit code your app shows now")).to_be_focused()
    secret = (await page.locator("#totp-secret").text_content() or "").replace(" ", "")
    app = AuthenticatorApp(secret)
    await page.keyboard.type(await app.code())
    await page.keyboard.press("Enter")
    await account.expect_notice("The authenticator app is on.")
    await expect(page.locator("#backup-codes")).to_be_focused()
    await tab_to("I have saved them")
    await page.keyboard.press("Enter")
    await expect(page.locator("#backup-codes")).to_be_hidden()

    await shift_tab_to("Log out")  # back up the page to the header
    await page.keyboard.press("Enter")
    await account.expect_signed_out()
    await expect(page.locator("#login-email")).to_be_focused()
    await page.keyboard.type(email)
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await expect(challenge_code(account)).to_be_focused()
    await page.keyboard.type(await app.code())
    await page.keyboard.press("Enter")
    await account.expect_signed_in(email)
    await account.shot("keyboard-signed-in")


async def test_problems_are_readable_and_429_counts_down(
    account: AccountPage, axe_source: str
) -> None:
    page = account.page
    email = new_email()

    # Every problem code the service can answer has a sentence on the page.
    messages: list[str] = await page.evaluate(
        "async () => Object.keys((await import('./messages.js')).MESSAGES)"
    )
    async with httpx.AsyncClient(base_url=account.service.origin, timeout=STEP_TIMEOUT) as api:
        document = (await api.get("/openapi.json")).json()
    codes = problem_codes(document) | error_codes(ServiceError)
    assert codes - set(messages) == set(), "codes without a message in messages.js"

    # An email already taken, and a weak password: the service's words, readable.
    register = page.locator("#register-form")
    await register.get_by_label("Email").fill(email)
    await register.get_by_label("Password").fill("password")
    await account.click("Create account")
    await account.expect_problem(re.compile("This password is too common"))

    # Wrong passwords: the tenth is still 401, then 429 with the Retry-After countdown.
    for _ in range(10):
        await log_in(account, email, "not the password")
        await account.expect_problem("The email or password is incorrect.")
        await expect(account.button("Log in")).to_be_enabled()
    await log_in(account, email)
    await account.expect_problem("Too many attempts.")
    retry = page.locator("#problem-retry")
    await expect(retry).to_have_text(re.compile(r"^You can try again in \d+:\d\d\.$"))
    first = await retry.text_content()
    minutes, seconds = re.findall(r"\d+", first or "")
    # The window (MFA_LOGIN_WINDOW_SECONDS, 900) counts from the first wrong password.
    assert 0 < int(minutes) * 60 + int(seconds) <= 900, first
    await expect(retry).not_to_have_text(first or "", timeout=EXPECT_TIMEOUT_MS)
    await account.shot("rate-limited")
    await no_blocking_violations(account, axe_source, "a problem shown")


def problem_codes(document: dict[str, Any]) -> set[str]:
    """Every `code` enum of the problem+json schemas the operations answer."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            code = node.get("properties", {}).get("code") if "properties" in node else None
            if isinstance(code, dict) and isinstance(code.get("enum"), list):
                found.update(code["enum"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    return found


def error_codes(base: type[ServiceError]) -> set[str]:
    codes = {base.code}
    for sub in base.__subclasses__():
        codes |= error_codes(sub)
    return codes
