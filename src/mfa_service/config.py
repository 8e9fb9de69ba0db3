"""Settings: one class, environment prefix ``MFA_``."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from mfa_service.redis_url import check as check_redis_url

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Where the account page is mounted (account_page/site.py), when it is on.
ACCOUNT_PAGE_PATH = "/account"
CLIENT_ID = re.compile(r"[A-Za-z0-9._~-]{1,64}")
MIN_CLIENT_SECRET = 24


def decode_key(text: str) -> bytes:
    """url-safe base64, padding optional; b"" when it is not base64 at all."""
    text = text.strip()
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return b""


def is_registrable_suffix(rp_id: str, host: str) -> bool:
    """WebAuthn's rule (RP ID = the origin's host or a parent domain of it), without the
    public suffix list: an IP address is only its own RP ID, and an RP ID needs a dot unless
    it is the host itself (so `com` never covers `example.com`)."""
    host = host.lower()
    if host == rp_id:
        return True
    try:
        ipaddress.ip_address(host)
        return False
    except ValueError:
        pass
    return "." in rp_id and host.endswith("." + rp_id)


class Settings(BaseSettings):
    # hide_input_in_errors: a rejected value may be a secret (data key, client secrets).
    model_config = SettingsConfigDict(env_prefix="MFA_", extra="ignore", hide_input_in_errors=True)

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path("./data")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; default: SQLite file in data_dir."
    )
    redis_url: str | None = Field(
        default=None,
        description=(
            "One server: redis://, rediss:// or unix://. A Redis Cluster: "
            "redis+cluster://[user:password@]host:port[,host:port...] (rediss+cluster:// for "
            "TLS), a few nodes to start from. Unset: in-process emulation (one process only)."
        ),
    )
    redis_prefix: str = "mfa:"
    # Seconds a Redis command (or connecting) may take: a stalled Redis must turn into a quick
    # 503, not a hung request.
    redis_timeout: float = Field(default=2.0, gt=0)
    # Connections per process, and how long a request waits for one before answering 503.
    database_pool_size: int = Field(default=20, ge=1)
    database_pool_timeout: float = Field(default=5.0, gt=0)

    issuer: str = "http://localhost:8000"
    # The name authenticator apps show beside the account.
    totp_issuer: str = Field(default="mfa-service", pattern=r"^[^:]+$")
    audience: str = "mfa-service"
    jwt_algorithm: Literal["ES256", "EdDSA", "RS256"] = "ES256"
    # Base64 (url-safe) 32-byte key for AES-GCM over TOTP secrets and signing keys.
    data_key: SecretStr | None = None

    access_token_ttl: int = Field(default=900, ge=30, le=900)
    challenge_ttl: int = Field(default=300, ge=30, le=3600)
    session_max_age: int = Field(default=43200, ge=60)
    session_idle_timeout: int = Field(default=1800, ge=60)

    challenge_max_attempts: int = Field(default=5, ge=1)
    factor_max_failures: int = Field(default=10, ge=1)
    factor_lock_seconds: int = Field(default=900, ge=1)
    login_max_failures: int = Field(default=10, ge=1)
    login_window_seconds: int = Field(default=900, ge=1)
    login_account_max_failures: int = Field(default=100, ge=1)
    login_ip_max_failures: int = Field(default=100, ge=1)

    cors_origins: Annotated[list[str], NoDecode] = []
    # Services allowed to call /oauth/introspect: "client-id:secret,other-id:secret".
    introspection_clients: Annotated[dict[str, SecretStr], NoDecode] = {}
    trusted_proxies: Annotated[list[IPNetwork], NoDecode] = []
    # Which header a trusted proxy writes the client's address in (the other one is ignored).
    proxy_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"

    # Registration attempts per client IP (every attempt counts, whatever its answer).
    register_ip_max: int = Field(default=20, ge=1)
    register_window_seconds: int = Field(default=3600, ge=1)
    # Request bodies larger than this answer 413 without being read further.
    max_body_bytes: int = Field(default=65536, ge=1024)
    # Enrolling a factor needs an authentication event at most this old (RFC 9470 max_age).
    reauth_max_age: int = Field(default=300, ge=30, le=3600)

    # Device tokens (SPEC §8): a login that sends one back skips the account and IP password
    # limits and has its own (device_max_failures wrong passwords spend it).
    device_token_days: int = Field(default=90, ge=1, le=3650)
    device_max_failures: int = Field(default=10, ge=1)
    # How long "remember this device" skips the challenge; 0 turns the feature off.
    remember_device_days: int = Field(default=30, ge=0, le=3650)
    # Users without a second factor must enroll one before they get tokens.
    require_mfa: bool = False
    # How long an enrollment token (MFA_REQUIRE_MFA) may be used.
    enrollment_ttl: int = Field(default=900, ge=60, le=3600)

    # WebAuthn relying party (SPEC §7). Unset: derived from MFA_ISSUER (its host; its origin).
    webauthn_rp_id: str | None = None
    webauthn_rp_name: str | None = Field(default=None, description="Default: MFA_TOTP_ISSUER.")
    webauthn_origins: Annotated[list[str], NoDecode] = []
    # Passkey-login options calls per client IP per MFA_LOGIN_WINDOW_SECONDS (each is counted).
    passkey_options_ip_max: int = Field(default=300, ge=1)

    # The account page at /account/ (SPEC §2 clients' reference SPA). Unset: on in development,
    # off in production.
    account_page: bool | None = None

    # Logs: one JSON object a line, or readable text. Unset: text in development, JSON in
    # production.
    log_format: Literal["json", "text"] | None = None
    # With it set, GET /metrics wants `Authorization: Bearer <token>`.
    metrics_token: SecretStr | None = None

    # `mfa-service db prune` deletes audit events older than this.
    audit_retention_days: int = Field(default=365, ge=1)
    # ...and delivered or given-up outbox rows (mail, webhooks) older than this.
    outbox_retention_days: int = Field(default=30, ge=1)

    # Password hashing: argon2id, OWASP minimum by default.
    argon2_memory_kib: int = Field(default=19456, ge=19456)
    argon2_time_cost: int = Field(default=2, ge=2)
    argon2_parallelism: int = Field(default=1, ge=1)
    # Threads that may hash at once (0: one per core) and how many requests may wait for one.
    hash_workers: int = Field(default=0, ge=0)
    hash_queue_limit: int = Field(default=256, ge=1)

    # Mail and account recovery (SPEC §10). No SMTP URL: each message is written as an .eml
    # file under <data dir>/outbox/ (the embedded default). smtp:// uses STARTTLS when the
    # server offers it, smtps:// is TLS from the start; user:password@ in the URL is allowed.
    smtp_url: SecretStr | None = None
    mail_from: str = "mfa-service <no-reply@localhost>"
    smtp_timeout: float = Field(default=30.0, gt=0)
    # PEM CA certificates to check the SMTP server's certificate with, instead of the system's
    # (a relay with a private CA). The certificate is always checked.
    smtp_ca_file: FilePath | None = None
    # Where the links in mails point (your front end), `?token=…` appended. Default: the
    # account page's views under MFA_ISSUER (/account/reset-password, /account/verify-email).
    password_reset_url: str | None = None
    email_verify_url: str | None = None
    password_reset_ttl: int = Field(default=1800, ge=60, le=86400)
    email_verify_ttl: int = Field(default=86400, ge=300, le=30 * 86400)
    # POST /auth/password/forgot per client IP and per email, each counted whatever the answer.
    password_reset_ip_max: int = Field(default=20, ge=1)
    password_reset_account_max: int = Field(default=5, ge=1)
    password_reset_window_seconds: int = Field(default=3600, ge=60)
    # Verification mails per user per MFA_PASSWORD_RESET_WINDOW_SECONDS.
    email_verify_max: int = Field(default=5, ge=1)
    # Login refuses (403 email_not_verified) a user who has not verified their address.
    require_verified_email: bool = False

    # The outbox worker (mail, webhooks): how often it looks for due rows besides being woken
    # after a commit, how long a claimed row is its own, and when a row is given up.
    outbox_poll_seconds: float = Field(default=5.0, gt=0, le=300)
    outbox_lease_seconds: int = Field(default=300, ge=30)
    outbox_max_age: int = Field(default=86400, ge=60)

    # Webhooks (SPEC §9): every audit event POSTed to this URL, signed per Standard Webhooks
    # with MFA_WEBHOOK_SECRET (`whsec_` + base64 of 24 to 64 random bytes). Both or neither.
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_timeout: float = Field(default=10.0, gt=0, le=60)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("webauthn_origins", mode="before")
    @classmethod
    def _split_webauthn_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
        return value

    @field_validator("proxy_header", mode="before")
    @classmethod
    def _lower_header(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            return [ipaddress.ip_network(str(v), strict=False) for v in value]
        return value

    @field_validator("introspection_clients", mode="before")
    @classmethod
    def _parse_clients(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        clients: dict[str, str] = {}
        for entry in filter(None, (part.strip() for part in value.split(","))):
            client_id, _, secret = entry.partition(":")
            # No input in the messages: half of it is a secret.
            if not CLIENT_ID.fullmatch(client_id) or client_id in clients:
                raise ValueError('each entry is "client-id:secret" with a distinct id')
            if len(secret) < MIN_CLIENT_SECRET:
                raise ValueError(
                    f"client {client_id!r}: the secret needs at least {MIN_CLIENT_SECRET} "
                    "characters (generate one with: mfa-service keys generate-data-key)"
                )
            clients[client_id] = secret
        return clients

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        return check_redis_url(value.strip()) if value is not None and value.strip() else None

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        parts = urlsplit(value.get_secret_value().strip())
        try:
            parts.port  # noqa: B018 (raises on a malformed port)
        except ValueError:
            raise ValueError("the port is not a number") from None
        # No input in the messages: the URL may hold a password.
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("must be smtp://[user:password@]host[:port] or smtps://…")
        return SecretStr(value.get_secret_value().strip())

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        # No input in the message: the URL may carry the receiver's token.
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        return value.strip()

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        text = value.get_secret_value().strip().removeprefix("whsec_")
        try:
            size = len(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            size = 0
        if not 24 <= size <= 64:
            # No input in the message: it is a secret.
            raise ValueError(
                "must be whsec_ followed by the base64 of 24 to 64 random bytes "
                "(generate one with: mfa-service webhooks generate-secret)"
            )
        return SecretStr(value.get_secret_value().strip())

    @model_validator(mode="after")
    def _webhook_pair(self) -> Settings:
        if (self.webhook_url is None) != (self.webhook_secret is None):
            raise ValueError("MFA_WEBHOOK_URL and MFA_WEBHOOK_SECRET are set together")
        return self

    @field_validator("data_key")
    @classmethod
    def _data_key_is_32_bytes(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(decode_key(value.get_secret_value())) != 32:
            # No input in the message: it is a secret.
            raise ValueError(
                "must be 32 random bytes, base64-encoded "
                "(generate one with: mfa-service keys generate-data-key)"
            )
        return value

    @field_validator("issuer")
    @classmethod
    def _strip_issuer(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _webauthn_relying_party(self) -> Settings:
        """Fill the defaults from the issuer; refuse an RP ID that no origin can use."""
        issuer = urlsplit(self.issuer)
        if self.webauthn_rp_id is None:
            self.webauthn_rp_id = issuer.hostname or "localhost"
        self.webauthn_rp_id = self.webauthn_rp_id.strip().lower()
        if self.webauthn_rp_name is None:
            self.webauthn_rp_name = self.totp_issuer
        if not self.webauthn_origins:
            self.webauthn_origins = [f"{issuer.scheme}://{issuer.netloc}"]
        for origin in self.webauthn_origins:
            parts = urlsplit(origin)
            host = parts.hostname or ""
            if parts.scheme not in ("https", "http") or not host or parts.path or parts.query:
                raise ValueError(
                    f"MFA_WEBAUTHN_ORIGINS: {origin!r} is not an origin "
                    "(scheme://host[:port], no path)"
                )
            if not is_registrable_suffix(self.webauthn_rp_id, host):
                raise ValueError(
                    f"MFA_WEBAUTHN_RP_ID: {self.webauthn_rp_id!r} is not a registrable suffix "
                    f"of the host of origin {origin!r} (MFA_WEBAUTHN_ORIGINS); browsers would "
                    "refuse every WebAuthn call"
                )
        return self

    @model_validator(mode="after")
    def _production_needs_real_keys(self) -> Settings:
        if self.env != "production":
            return self
        if self.data_key is None:
            raise ValueError(
                "MFA_DATA_KEY is required when MFA_ENV=production "
                "(generate one with: mfa-service keys generate-data-key)"
            )
        if self.redis_url is None:
            raise ValueError("MFA_REDIS_URL is required when MFA_ENV=production")
        if self.database_url is None:
            raise ValueError("MFA_DATABASE_URL is required when MFA_ENV=production")
        return self

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'mfa.db').resolve()}"

    @property
    def account_page_enabled(self) -> bool:
        if self.account_page is None:
            return self.env == "development"
        return self.account_page

    @property
    def effective_log_format(self) -> Literal["json", "text"]:
        if self.log_format is not None:
            return self.log_format
        return "json" if self.env == "production" else "text"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def unserved_mail_links(self) -> list[str]:
        """The link settings left to their defaults, the account page's views, while the
        account page is off."""
        if self.account_page_enabled:
            return []
        links = {
            "MFA_PASSWORD_RESET_URL": self.password_reset_url,
            "MFA_EMAIL_VERIFY_URL": self.email_verify_url,
        }
        return [name for name, value in links.items() if value is None]

    @property
    def effective_password_reset_url(self) -> str:
        return self.password_reset_url or f"{self.issuer}{ACCOUNT_PAGE_PATH}/reset-password"

    @property
    def effective_email_verify_url(self) -> str:
        return self.email_verify_url or f"{self.issuer}{ACCOUNT_PAGE_PATH}/verify-email"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/.well-known/jwks.json"
