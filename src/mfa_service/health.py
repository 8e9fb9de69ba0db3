"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from sqlalchemy import text

from mfa_service import redis_client
from mfa_service.db import READ_ONLY
from mfa_service.errors import BACKEND_DOWN, ServiceUnavailable, responses
from mfa_service.services import ServicesDep

router = APIRouter(tags=["health"])


class Alive(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ready"}]})

    status: Literal["ready"] = "ready"


@router.get(
    "/healthz",
    response_model=Alive,
    operation_id="getLiveness",
    summary="Liveness: the process answers",
)
async def healthz() -> Alive:
    """200 while the process runs, whatever the database and Redis do: a restart would not
    help when they are down (that is `/readyz`)."""
    return Alive()


@router.get(
    "/readyz",
    response_model=Ready,
    operation_id="getReadiness",
    summary="Readiness: the database and Redis answer",
    responses=responses(ServiceUnavailable),
)
async def readyz(svc: ServicesDep) -> Ready:
    """200 when a `SELECT 1` and Redis (a `PING`; on a cluster, every primary's, and its
    `cluster_state:ok`) both answer within 3 s, else 503: take the instance out of the load
    balancer until they do."""
    try:
        async with asyncio.timeout(3):
            async with svc.engine.connect() as conn:
                await conn.execution_options(**READ_ONLY)
                await conn.execute(text("SELECT 1"))
            await redis_client.check(svc.redis)
    except BACKEND_DOWN:
        raise ServiceUnavailable("The database or Redis is not answering.") from None
    return Ready()
