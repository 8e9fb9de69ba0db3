from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.recovery.smtp import SmtpServer


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
