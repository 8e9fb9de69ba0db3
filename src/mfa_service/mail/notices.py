"""Security notices (SPEC §10): which audit events mail their user, and what the mail says.
`audit.record` enqueues one for each such event, in the same transaction, so every place
that records the event (routes, the admin command line) notifies, and only once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mfa_service.config import Settings

CHANGE_PASSWORD = (
    'reset your password now (use "Forgot password" on the sign-in page), then check your '
    "second factors and signed-in sessions, and contact support."
)
CHECK_FACTORS = (
    "someone who knows your password and had a second factor changed your account's "
    'security. Reset your password now ("Forgot password"), review your second factors, '
    "and contact support."
)


@dataclass(frozen=True)
class Notice:
    title: str
    what: Callable[[dict[str, str], Settings], str]
    advice: str


def _fixed(text: str) -> Callable[[dict[str, str], Settings], str]:
    return lambda _detail, _settings: text


def _removed(factor: str) -> Callable[[dict[str, str], Settings], str]:
    def what(detail: dict[str, str], _settings: Settings) -> str:
        text = f"{factor} was removed from your account."
        if detail.get("mfa") == "off":
            text += " It was your last second factor: multi-factor authentication is now OFF."
        return text

    return what


def _locked(_detail: dict[str, str], settings: Settings) -> str:
    minutes = max(1, settings.factor_lock_seconds // 60)
    return (
        "Too many wrong second-factor codes were entered for your account, so second-factor "
        f"sign-in is locked for {minutes} minutes. Whoever tried knew your password."
    )


NOTICES: dict[str, Notice] = {
    "password.changed": Notice(
        "password changed",
        _fixed("The password of your account was changed. Your other sessions were ended."),
        CHANGE_PASSWORD,
    ),
    "password.reset": Notice(
        "password reset",
        _fixed(
            "The password of your account was reset with a link sent to this address. Every "
            "session and remembered device was signed out."
        ),
        CHANGE_PASSWORD,
    ),
    "totp.enabled": Notice(
        "authenticator app added",
        _fixed("An authenticator app (TOTP) was added to your account as a second factor."),
        CHECK_FACTORS,
    ),
    "webauthn.registered": Notice(
        "security key added",
        _fixed("A security key or passkey was added to your account."),
        CHECK_FACTORS,
    ),
    "totp.disabled": Notice(
        "authenticator app removed", _removed("The authenticator app (TOTP)"), CHECK_FACTORS
    ),
    "webauthn.removed": Notice(
        "security key removed", _removed("A security key or passkey"), CHECK_FACTORS
    ),
    "backup_codes.regenerated": Notice(
        "new backup codes",
        _fixed("New backup codes were made for your account; the earlier ones no longer work."),
        CHECK_FACTORS,
    ),
    "factor.locked": Notice("second factor locked", _locked, CHANGE_PASSWORD),
    # `mfa-service users reset-mfa` (SPEC §9): an operator removed every factor.
    "account.mfa_reset": Notice(
        "second factors removed",
        _fixed(
            "An administrator removed every second factor of your account: multi-factor "
            "authentication is now OFF, and every session was signed out."
        ),
        CHANGE_PASSWORD,
    ),
}
