"""What request and response schemas of every domain share."""

from __future__ import annotations

from typing import Any


def optional_in_clients(schema: dict[str, Any]) -> None:
    """A request field with a default, documented without it (its description says it):
    openapi-typescript makes a field with a default required, so a client would have to send
    it."""
    schema.pop("default", None)
