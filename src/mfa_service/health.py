"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from sqlalchemy import text

from mfa_service.db import READ_ONLY
from mfa_service.errors import BACKEND_DOWN, ServiceUnavailable, responses
from mfa_service.services import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the database and Redis answer",
    responses=responses(ServiceUnavailable),
)
async def readyz(svc: ServicesDep) -> dict[str, str]:
    try:
        async with asyncio.timeout(3):
            async with svc.engine.connect() as conn:
                await conn.execution_options(**READ_ONLY)
                await conn.execute(text("SELECT 1"))
            await svc.redis.ping()
    except BACKEND_DOWN:
        raise ServiceUnavailable("The database or Redis is not answering.") from None
    return {"status": "ready"}
