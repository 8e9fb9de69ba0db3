from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


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
                    # Opaque; null on the last page (the generated document cannot show a null).
                    "next_cursor": "MjAyNi0xMS0yOFQwOToxNTowMiswMDowMHw1ZDJm"
                    "N2M5ZS0wYTQxLTRiNmUtOGYzZC0xYzJiM2E0ZDVlNmY=",
                }
            ]
        }
    )

    items: list[EventOut]
    next_cursor: str | None = Field(description="For the next page; null on the last one.")
