from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.fuzz.harness import Fuzzing, fuzz_settings, fuzzing
from tests.support import Backend, FakeClock


@pytest.fixture(scope="module")
def fuzz(backend: Backend) -> Iterator[Fuzzing]:
    """One app per backend for the whole fuzz run, with the service's default limits."""
    with fuzzing(fuzz_settings(backend), FakeClock()) as f:
        yield f
        if os.environ.get("MFA_FUZZ_STATS") == "1":
            for key, counts in sorted(f.statuses.items()):
                print(f"{backend.name} {key}: {dict(sorted(counts.items()))}")  # noqa: T201
