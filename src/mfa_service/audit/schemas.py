from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class EventOut(BaseModel):
    type: str
    at: datetime
    ip: str
    user_agent: str
    detail: dict[str, str]


class EventPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "type": "login.succeeded",
                            "at": "2026-11-28T09:15:02Z",
                            "ip": "203.0.113.7",
                            "user_agent": "curl/8.5.0",
                            "detail": {},
                        }
                    ],
                    "next_cursor": None,
                }
            ]
        }
    )

    items: list[EventOut]
    next_cursor: str | None
