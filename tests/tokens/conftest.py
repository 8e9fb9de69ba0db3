from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import fallback, postgres_database


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A PostgreSQL database of the test's own, migrated (dropped afterwards): its keys are the
    ones the test made, not those other tests left in the shared database."""
    with postgres_database() as url:
        if url is None:
            fallback("MFA_TEST_DATABASE_URL is not set: this PostgreSQL test is skipped")
            pytest.skip("MFA_TEST_DATABASE_URL is not set")
        yield url
