"""The embedded default without SMTP: each mail an .eml file under <data dir>/outbox/, and a
log line that says so without the link."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import stat
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from mfa_service.observability import logs
from tests.recovery.smtp import TOKEN
from tests.support import Backend, FakeClock, new_email, register, running_app, settings_for


async def wait_for_file(directory: Path, to: str, timeout: float = 60) -> tuple[Path, EmailMessage]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted(directory.glob("*.eml")) if directory.exists() else []:
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            if message["To"] == to:
                return path, message
        await asyncio.sleep(0.05)
    raise AssertionError(f"no .eml file for {to} in {directory}")


async def test_eml_files_without_smtp(
    backend: Backend, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mfa_service")
    data_dir = tmp_path / "data"
    async with running_app(settings_for(backend, data_dir=data_dir), clock) as client:
        address = new_email()
        await register(client, address)
        r = await client.post("/auth/password/forgot", json={"email": address})
        assert r.status_code == 202
        path, message = await wait_for_file(data_dir / "outbox", address)
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        found = TOKEN.search(body.get_content())
        assert found is not None
        token = found.group(1)
        assert "http://mfa.test/account/reset-password?token=" in body.get_content()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE((data_dir / "outbox").stat().st_mode) == 0o700

        reset = await client.post(
            "/auth/password/reset", json={"token": token, "new_password": "a brand new one"}
        )
        assert reset.status_code == 204

    # The line as the service writes it (redacted, JSON) still names the file to open.
    render = logs.formatter("json").format
    wrote = [render(r) for r in caplog.records if "wrote" in r.getMessage()]
    assert any(str(path) in line for line in wrote), wrote
    for record in caplog.records:
        assert token not in record.getMessage()
        assert address not in record.getMessage()
