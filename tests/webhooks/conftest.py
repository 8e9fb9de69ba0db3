from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator

import pytest

from tests.webhooks.receiver import Receiver


@pytest.fixture
def secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def hooks(secret: str) -> Iterator[Receiver]:
    receiver = Receiver(secret).start()
    try:
        yield receiver
    finally:
        receiver.stop()
