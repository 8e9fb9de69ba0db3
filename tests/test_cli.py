"""The command line as a user meets it: help with defaults, --version, usage errors (exit 2)
and one-line refusals instead of tracebacks."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.support import run_cli


def test_version_is_the_package_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"mfa-service {version('mfa-service')}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("serve", "--log-level", "foo"), "invalid choice: 'foo'"),
        (("serve", "--port", "70000"), "not a TCP port"),
        (("serve", "--port", "http"), "invalid _port value"),
        (("serve", "--workers", "0"), "not at least 1"),
        (("keys", "nonsense"), "invalid choice: 'nonsense'"),
        ((), "the following arguments are required: COMMAND"),
    ],
)
def test_bad_arguments_are_usage_errors(args: tuple[str, ...], expected: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: mfa-service")
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_every_option_has_help_and_its_default() -> None:
    serve = run_cli("serve", "--help")
    assert serve.returncode == 0
    # One block per option, its help wrapped over the lines up to the next one.
    options = re.split(r"\n  (?=-)", serve.stdout.split("options:", 1)[1])
    helps = {block.split()[0]: " ".join(block.split()) for block in options if block.strip()}
    for option, default in (
        ("--host", "127.0.0.1"),
        ("--port", "8000"),
        ("--workers", "1"),
        ("--log-level", "info"),
    ):
        assert f"(default: {default})" in helps[option], helps[option]
    assert "critical,error,warning,info,debug,trace" in serve.stdout
    for command in (("db", "upgrade"), ("keys", "list"), ("keys", "rotate"), ("keys", "revoke")):
        result = run_cli(*command, "--help")
        assert result.returncode == 0, command
        assert result.stdout.startswith("usage: mfa-service " + " ".join(command))
    top = run_cli("--help")
    assert "--version" in top.stdout
    assert "MFA_" in top.stdout


def test_a_log_level_from_the_choices_is_taken(tmp_path: Path) -> None:
    # Refused later, for want of Redis: the option itself parsed.
    result = run_cli(
        "serve", "--workers", "2", "--log-level", "warning", MFA_DATA_DIR=str(tmp_path)
    )
    assert result.returncode == 2
    assert "MFA_REDIS_URL" in result.stderr
    assert "usage:" not in result.stderr


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    result = run_cli(
        "db",
        "upgrade",
        MFA_DATA_DIR=str(tmp_path),
        MFA_DATABASE_URL="postgresql+asyncpg://mfa:hunter2-secret@127.0.0.1:1/mfa",
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "unreachable" in result.stderr
    assert "hunter2" not in result.stderr


def test_a_database_file_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "mfa.db"
    result = run_cli(
        "keys",
        "list",
        MFA_DATA_DIR=str(tmp_path),
        MFA_DATABASE_URL=f"sqlite+aiosqlite:///{missing}",
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "database error" in result.stderr
