"""Settings from the environment, the CLI's refusals, and CORS."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import create_async_engine

from mfa_service import migrations
from mfa_service.config import Settings
from mfa_service.secretbox import generate_data_key
from tests.support import Backend, run_cli, running_app, settings_for

BAD_KEY = "changeme"
REDIS_URL = "redis://127.0.0.1:6379/0"  # never contacted by the commands run here


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read MFA_* variables: the developer's own must not leak into these tests."""
    for name in list(os.environ):
        if name.startswith("MFA_") and not name.startswith("MFA_TEST_"):
            monkeypatch.delenv(name)


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def migrated_sqlite(tmp_path: Path) -> str:
    url = sqlite_url(tmp_path / "migrated.db")

    async def migrate() -> None:
        engine = create_async_engine(url)
        try:
            await migrations.upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(migrate())
    return url


# --- Settings ------------------------------------------------------------------------------


PRODUCTION_COMPLETE: dict[str, Any] = {
    "data_key": "k" * 43,
    "redis_url": REDIS_URL,
    "database_url": "postgresql+asyncpg://mfa@db/mfa",
}


@pytest.mark.parametrize(
    ("missing", "variable"),
    [
        ("data_key", "MFA_DATA_KEY"),
        ("redis_url", "MFA_REDIS_URL"),
        ("database_url", "MFA_DATABASE_URL"),
    ],
)
def test_production_requires_each_setting(missing: str, variable: str) -> None:
    values = {k: v for k, v in PRODUCTION_COMPLETE.items() if k != missing}
    with pytest.raises(ValidationError, match=variable):
        Settings(env="production", **values)


def test_production_with_nothing_configured_names_the_data_key() -> None:
    with pytest.raises(ValidationError, match="MFA_DATA_KEY"):
        Settings(env="production")


def test_production_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MFA_ENV", "production")
    with pytest.raises(ValidationError, match="MFA_DATA_KEY"):
        Settings()
    monkeypatch.setenv("MFA_DATA_KEY", generate_data_key())
    with pytest.raises(ValidationError, match="MFA_REDIS_URL"):
        Settings()
    monkeypatch.setenv("MFA_REDIS_URL", REDIS_URL)
    with pytest.raises(ValidationError, match="MFA_DATABASE_URL"):
        Settings()
    monkeypatch.setenv("MFA_DATABASE_URL", "postgresql+asyncpg://mfa@db/mfa")
    assert Settings().env == "production"


def test_development_needs_nothing() -> None:
    settings = Settings()
    assert settings.env == "development"
    assert settings.data_key is None
    assert settings.redis_url is None
    assert settings.is_sqlite


def test_cors_origins_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MFA_CORS_ORIGINS", "https://a.example, https://b.example")
    assert Settings().cors_origins == ["https://a.example", "https://b.example"]


def test_trusted_proxies_are_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MFA_TRUSTED_PROXIES", "10.0.0.0/8,127.0.0.1")
    assert Settings().trusted_proxies == [
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("127.0.0.1/32"),
    ]


def test_trusted_proxies_refuse_garbage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MFA_TRUSTED_PROXIES", "10.0.0.0/8,not-an-address")
    with pytest.raises(ValueError, match="not-an-address"):
        Settings()


def test_introspection_clients_are_id_secret_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "x" * 24
    monkeypatch.setenv("MFA_INTROSPECTION_CLIENTS", f"billing:{secret}, payouts:{secret}:more")
    clients = Settings().introspection_clients
    assert {k: v.get_secret_value() for k, v in clients.items()} == {
        "billing": secret,
        "payouts": f"{secret}:more",
    }
    assert secret not in repr(clients)


@pytest.mark.parametrize(
    "value",
    [
        "billing:too-short-secret",
        "billing",
        "bad id:" + "y" * 30,
        "a:" + "z" * 30 + ",a:" + "z" * 30,
    ],
)
def test_introspection_clients_refuse_weak_or_malformed_entries(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("MFA_INTROSPECTION_CLIENTS", value)
    with pytest.raises(ValidationError) as raised:
        Settings()
    message = str(raised.value)
    secret = value.partition(":")[2].split(",")[0]
    assert not secret or secret not in message


# --- The CLI refuses bad configurations before it serves -------------------------------------


def production_env(database_url: str) -> dict[str, str]:
    return {
        "MFA_ENV": "production",
        "MFA_DATA_KEY": BAD_KEY,
        "MFA_DATABASE_URL": database_url,
        "MFA_REDIS_URL": REDIS_URL,
    }


def assert_refused_bad_key(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode != 0, result.stdout
    assert "MFA_DATA_KEY" in result.stderr
    assert "must be 32 random bytes" in result.stderr
    assert BAD_KEY not in result.stderr
    assert BAD_KEY not in result.stdout


@pytest.mark.parametrize("command", [("keys", "rotate"), ("serve", "--port", "1")])
def test_malformed_data_key_is_refused(migrated_sqlite: str, command: tuple[str, ...]) -> None:
    assert_refused_bad_key(run_cli(*command, **production_env(migrated_sqlite)))


def test_malformed_data_key_is_refused_by_keys_list(migrated_sqlite: str) -> None:
    assert_refused_bad_key(run_cli("keys", "list", **production_env(migrated_sqlite)))


def test_configuration_error_does_not_print_secrets(tmp_path: Path) -> None:
    secret = generate_data_key()
    result = run_cli(
        "keys", "list", MFA_ENV="production", MFA_DATA_KEY=secret, MFA_DATA_DIR=str(tmp_path)
    )
    assert result.returncode != 0
    assert "MFA_REDIS_URL" in result.stderr
    # pydantic shortens a long input_value in the middle: look for any fragment of the key.
    fragments = {secret[i : i + 8] for i in range(len(secret) - 7)}
    assert not [f for f in fragments if f in result.stderr], result.stderr


def test_several_workers_need_redis(tmp_path: Path) -> None:
    result = run_cli("serve", "--workers", "2", "--port", "1", MFA_DATA_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "MFA_REDIS_URL" in result.stderr


def test_several_workers_need_a_database_server(tmp_path: Path) -> None:
    # SQLite serialises writers: several processes queueing for its lock answered 503s.
    result = run_cli(
        "serve",
        "--workers",
        "2",
        "--port",
        "1",
        MFA_DATA_DIR=str(tmp_path),
        MFA_REDIS_URL=REDIS_URL,
    )
    assert result.returncode == 2
    assert "MFA_DATABASE_URL" in result.stderr
    assert not (tmp_path / "mfa.db").exists()  # refused before touching anything


def test_cli_rotates_and_lists_signing_keys(tmp_path: Path) -> None:
    env = {"MFA_DATABASE_URL": sqlite_url(tmp_path / "x.db"), "MFA_DATA_DIR": str(tmp_path)}
    upgraded = run_cli("db", "upgrade", **env)
    assert upgraded.returncode == 0, upgraded.stderr
    # A fresh database has no key yet: the first rotation makes one, the second retires it.
    for _ in range(2):
        rotated = run_cli("keys", "rotate", **env)
        assert rotated.returncode == 0, rotated.stderr
        assert "new active signing key" in rotated.stdout
    listed = run_cli("keys", "list", **env)
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.strip().splitlines()[1:]  # after the header
    assert len(rows) == 2, listed.stdout
    assert rows[0].endswith(" active")  # newest first
    assert "retired " in rows[1]
    assert rows[1].endswith(", still published")


# --- CORS --------------------------------------------------------------------------------------


def preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }


async def test_cors_allows_the_configured_origin_only(backend: Backend) -> None:
    settings = settings_for(backend, cors_origins=["https://spa.example"])
    async with running_app(settings) as client:
        allowed = await client.options("/auth/login", headers=preflight("https://spa.example"))
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://spa.example"
        assert "POST" in allowed.headers["access-control-allow-methods"]
        # Tokens travel in the Authorization header, never in cookies.
        assert "access-control-allow-credentials" not in allowed.headers

        other = await client.options("/auth/login", headers=preflight("https://evil.example"))
        assert "access-control-allow-origin" not in other.headers

        simple = await client.get("/healthz", headers={"Origin": "https://spa.example"})
        assert simple.headers["access-control-allow-origin"] == "https://spa.example"
        simple = await client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in simple.headers


async def test_no_cors_headers_by_default(backend: Backend) -> None:
    async with running_app(settings_for(backend)) as client:
        r = await client.options("/auth/login", headers=preflight("https://spa.example"))
        assert not any(h.startswith("access-control-") for h in r.headers)
        r = await client.get("/healthz", headers={"Origin": "https://spa.example"})
        assert r.status_code == 200
        assert not any(h.startswith("access-control-") for h in r.headers)


def test_rejected_data_key_is_not_in_the_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    """`uvicorn --factory` without our CLI logs the traceback: it must not carry the key."""
    monkeypatch.setenv("MFA_DATA_KEY", "almost-a-key-but-too-short")
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert "almost-a-key" not in str(raised.value)


def test_webauthn_relying_party_defaults_come_from_the_issuer() -> None:
    settings = Settings(issuer="https://auth.example.com:8443/")
    assert settings.webauthn_rp_id == "auth.example.com"
    assert settings.webauthn_origins == ["https://auth.example.com:8443"]
    assert settings.webauthn_rp_name == settings.totp_issuer


def test_webauthn_rp_id_may_be_a_parent_domain_of_every_origin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MFA_WEBAUTHN_RP_ID", "example.com")
    monkeypatch.setenv("MFA_WEBAUTHN_ORIGINS", "https://app.example.com, https://example.com/")
    settings = Settings(issuer="https://auth.example.com")
    assert settings.webauthn_origins == ["https://app.example.com", "https://example.com"]


@pytest.mark.parametrize(
    ("rp_id", "origins"),
    [
        ("example.com", "https://example.org"),  # another site
        ("app.example.com", "https://example.com"),  # a child of the origin's host
        ("com", "https://example.com"),  # a public suffix (no dot)
        ("ample.com", "https://example.com"),  # a suffix of the string, not of the domain
        ("0.1", "https://127.0.0.1"),  # an IP address is only its own RP ID
    ],
)
def test_webauthn_rp_id_that_no_origin_can_use_is_refused_at_start(
    rp_id: str, origins: str, tmp_path: Path
) -> None:
    with pytest.raises(ValidationError, match="MFA_WEBAUTHN_RP_ID"):
        Settings(webauthn_rp_id=rp_id, webauthn_origins=origins)
    # The server refuses to start, naming the setting.
    result = run_cli(
        "keys",
        "list",
        MFA_DATA_DIR=str(tmp_path),
        MFA_WEBAUTHN_RP_ID=rp_id,
        MFA_WEBAUTHN_ORIGINS=origins,
    )
    assert result.returncode != 0
    assert "MFA_WEBAUTHN_RP_ID" in result.stderr


def test_webauthn_origins_must_be_origins() -> None:
    with pytest.raises(ValidationError, match="MFA_WEBAUTHN_ORIGINS"):
        Settings(webauthn_origins="https://example.com/login")
