"""RFC 6238 TOTP on pyotp: secrets, the Key Uri Format, and which time step a code matches.

No framework imports: this is the maths only.
"""

from __future__ import annotations

import hmac
import io

import pyotp
import segno

PERIOD = 30
DIGITS = 6
SECRET_CHARS = 32  # base32: 160 bits, the RFC 4226 recommendation


def new_secret() -> str:
    return pyotp.random_base32(SECRET_CHARS)  # from `secrets`, a CSPRNG


def otpauth_uri(secret: str, account: str, issuer: str) -> str:
    """`otpauth://totp/Issuer:account?secret=…&issuer=Issuer` (SHA1, 6 digits, 30 s)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD).provisioning_uri(
        name=account, issuer_name=issuer
    )


def normalise(code: str) -> str | None:
    """Spaces removed once; then exactly six ASCII digits, or None (a wrong code)."""
    code = code.replace(" ", "")
    if len(code) == DIGITS and code.isascii() and code.isdigit():
        return code
    return None


def time_step(at: float) -> int:
    return int(at // PERIOD)


def matching_step(secret: str, code: str, at: float, window: int = 1) -> int | None:
    """The time step (within ±window of `at`) whose code equals `code`, else None."""
    normalised = normalise(code)
    if normalised is None:
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD)
    current = time_step(at)
    found = None
    for step in range(current - window, current + window + 1):
        # Every candidate is compared, in constant time, whatever matched before.
        if hmac.compare_digest(totp.generate_otp(step), normalised):
            found = step
    return found


def qr_svg_data_uri(uri: str) -> str:
    return str(segno.make(uri, error="m").svg_data_uri(scale=4, border=4))


def qr_svg(uri: str) -> bytes:
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="svg", scale=4, border=4)
    return buffer.getvalue()


def qr_png(uri: str) -> bytes:
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="png", scale=6, border=4)
    return buffer.getvalue()
