"""Messages from the package's templates: plain text with an HTML alternative (the
standard library's `email` package). The first line of `<name>.txt` is the subject."""

from __future__ import annotations

import functools
import html
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from importlib.resources import files
from string import Template


@functools.cache
def _template(name: str) -> Template:
    return Template(files("mfa_service.mail").joinpath("templates", name).read_text("utf-8"))


def build(
    name: str, *, to: str, sender: str, domain: str, at: datetime, values: dict[str, str]
) -> EmailMessage:
    subject, _, text = _template(f"{name}.txt").substitute(values).partition("\n")
    escaped = {k: html.escape(v, quote=True) for k, v in values.items()}
    message = EmailMessage()
    message["Subject"] = subject.removeprefix("Subject: ").strip()
    message["From"] = sender
    message["To"] = to
    message["Date"] = format_datetime(at)
    message["Message-ID"] = make_msgid(domain=domain)  # a domain given: no resolver call
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to us, please
    message.set_content(text)
    message.add_alternative(_template(f"{name}.html").substitute(escaped), subtype="html")
    return message
