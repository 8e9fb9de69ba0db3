"""The account page's files, mounted at `/account/` with strict security headers.

Plain HTML, CSS and JavaScript modules shipped in the package: no build step, nothing from
another origin. Not part of the OpenAPI document (a mount is not an API operation)."""

from __future__ import annotations

from importlib import resources
from typing import NamedTuple

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from mfa_service.config import ACCOUNT_PAGE_PATH as PATH

# The views the mailed links open (MFA_PASSWORD_RESET_URL and MFA_EMAIL_VERIFY_URL default to
# them): the same page, which reads its view from the last path segment.
VIEWS = ("reset-password", "verify-email")

# Only this origin, and no inline script or style: what the page shows is built with the DOM
# (textContent), so an injected string is text, never markup. `data:` images for the TOTP QR
# code, which the API answers as a data:image/svg+xml URI.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    # Revalidated on every load (a 304 with the ETag): an upgraded package is never served stale.
    "Cache-Control": "no-cache",
}


class _Route(NamedTuple):
    path: str


# What the metrics and the access line label the page's requests with: a mount sets no route
# in the scope, and the file names are not worth a label each.
ROUTE = _Route(PATH + "/{file}")


class _AccountPage(StaticFiles):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = ROUTE
        await super().__call__(scope, receive, send)

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response("index.html" if path in VIEWS else path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def install_account_page(app: FastAPI) -> None:
    files = resources.files("mfa_service.account_page").joinpath("static")
    app.mount(PATH, _AccountPage(directory=str(files), html=True), name="account-page")
