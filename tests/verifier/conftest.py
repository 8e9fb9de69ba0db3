from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support import Backend, FakeClock, settings_for
from tests.verifier.support import Issuer, running_issuer


@pytest.fixture
async def issuer(backend: Backend, clock: FakeClock) -> AsyncIterator[Issuer]:
    """The real mfa-service app (SQLite and PostgreSQL, real Redis) on the test's clock."""
    async with running_issuer(settings_for(backend), clock) as running:
        yield running


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "isolated_install: builds a fresh venv with only mfa-verify installed (slow, needs the "
        "package index)",
    )
