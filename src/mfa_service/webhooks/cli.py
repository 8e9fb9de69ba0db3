"""`mfa-service webhooks list | retry | generate-secret`."""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import sys
import uuid
from collections.abc import Callable
from typing import Any

from mfa_service.clock import SystemClock, now
from mfa_service.config import Settings
from mfa_service.db import READ_ONLY, create_engine
from mfa_service.webhooks import admin

Formatter = Callable[[str], argparse.HelpFormatter]


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a delivery id (a UUID)") from None


def add_commands(commands: Any, formatter: Formatter) -> None:
    parser = commands.add_parser(
        "webhooks",
        help="webhook deliveries: list, retry the failed, make a secret",
        description="Deliveries of audit events to MFA_WEBHOOK_URL (Standard Webhooks). A "
        "delivery is retried with backoff for MFA_OUTBOX_MAX_AGE, then marked failed.",
        formatter_class=formatter,
    )
    actions = parser.add_subparsers(dest="webhooks_command", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list",
        help="the newest deliveries and their state",
        description="The newest deliveries, newest first: pending, delivered or failed.",
        formatter_class=formatter,
    )
    listing.add_argument("--failed", action="store_true", help="only those given up")
    listing.add_argument("--limit", type=int, default=50, help="at most this many")
    listing.add_argument("--json", action="store_true", help="JSON lines, for scripts")
    again = actions.add_parser(
        "retry",
        help="send failed deliveries again",
        description="Make failed deliveries due again, with a fresh MFA_OUTBOX_MAX_AGE of "
        "retries; a running instance sends them within MFA_OUTBOX_POLL_SECONDS.",
        formatter_class=formatter,
    )
    again.add_argument("ids", nargs="*", type=_uuid, metavar="ID", help="delivery ids (list)")
    again.add_argument("--all", action="store_true", help="every failed delivery")
    actions.add_parser(
        "generate-secret",
        help="print a new MFA_WEBHOOK_SECRET",
        description="Print a new value for MFA_WEBHOOK_SECRET (whsec_ + base64 of 32 random "
        "bytes); give the same value to the receiver.",
        formatter_class=formatter,
    )


async def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.webhooks_command == "generate-secret":
        print("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())
        return 0
    engine = create_engine(settings)
    try:
        if args.webhooks_command == "list":
            # A read: on SQLite it must not queue for the write lock the service takes.
            async with engine.connect() as conn:
                await conn.execution_options(**READ_ONLY)
                found = await admin.deliveries(conn, args.failed, args.limit)
            for delivery in found:
                print(json.dumps(delivery.as_json()) if args.json else _line(delivery))
            return 0
        if bool(args.ids) == args.all:
            print("mfa-service: give delivery ids or --all (not both)", file=sys.stderr)
            return 2
        async with engine.begin() as conn:
            count = await admin.retry(conn, None if args.all else args.ids, now(SystemClock()))
        print(f"{count} failed deliveries are due again")
        return 0 if count or args.all else 1
    finally:
        await engine.dispose()


def _line(d: admin.Delivery) -> str:
    error = f"  ({d.last_error})" if d.last_error else ""
    return (
        f"{d.id}  {d.state:<9}  {d.created_at:%Y-%m-%d %H:%M:%S}  {d.event_type}  "
        f"attempts {d.attempts}{error}"
    )
