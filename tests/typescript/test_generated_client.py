"""A TypeScript client generated from the OpenAPI document, as a single-page app would make
one: openapi-typescript turns the document into `schema.d.ts`, every error response must have
a typed `application/problem+json` body (never `unknown`, never no body), and `tsc --noEmit`
must accept `client-check.ts`, which uses the generated types the way an app does.

The npm tools are pinned by package.json and package-lock.json here; they are installed with
`npm ci` in a temporary copy of this folder, so the checkout gets no node_modules.
Without Node.js the tests skip, unless MFA_TEST_REQUIRE_SERVICES=1 (CI), where that fails."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mfa_service.app import create_app
from mfa_service.secretbox import generate_data_key
from tests.support import (
    REQUIRE_SERVICES,
    Backend,
    command_must_succeed,
    run_command,
    settings_for,
)

HERE = Path(__file__).parent
PROJECT_FILES = ("package.json", "package-lock.json", "tsconfig.json", "client-check.ts")
MIN_NODE_MAJOR = 18
PROBLEM_MEDIA = "application/problem+json"
# Generous bounds: they stop a hung npm, they do not measure the machine.
INSTALL_TIMEOUT = 900
TOOL_TIMEOUT = 600


# --- the generated declarations, read as a tree of keys -------------------------------------

KEY = re.compile(
    r"""^(?:
        export\s+(?:interface|type)\s+(?P<decl>[\w$]+)
        | (?P<key>"(?:[^"\\]|\\.)*" | '(?:[^'\\]|\\.)*' | [A-Za-z_$][\w$]* | \d+)
          (?P<optional>\?)?:\s*(?P<value>.*)
    )""",
    re.VERBOSE,
)
STRING = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'""")
ERROR_STATUS = re.compile(r"^(?:[45]\d\d|[45]XX|default)$")
COMPONENT_REF = re.compile(r"""^components\["(?P<kind>\w+)"\]\["(?P<name>[^"]+)"\]$""")


@dataclass(frozen=True)
class Member:
    """A `key: type` of the declarations: its path of keys from the top (None for an
    anonymous `{`, e.g. the second member of a union), and the type text after the colon."""

    path: tuple[str | None, ...]
    value: str
    opens_block: bool


def unquote(key: str) -> str:
    if key.startswith("'"):
        key = '"' + key[1:-1].replace("\\'", "'").replace('"', '\\"') + '"'
    if key.startswith('"'):
        unquoted: str = json.loads(key)
        return unquoted
    return key


def members(declarations: str) -> Iterator[Member]:
    """Every member of openapi-typescript's output with its path. Comments are dropped and
    braces inside string literals are not counted; one member per line, as it writes them."""
    stack: list[str | None] = []
    in_comment = False
    for raw in declarations.splitlines():
        code, in_comment = strip_comments(raw, in_comment)
        code = code.strip()
        if not code:
            continue
        match = KEY.match(code)
        key = None
        value = ""
        if match and match["decl"]:
            key = match["decl"]
        elif match and match["key"]:
            key, value = unquote(match["key"]), match["value"].rstrip(";").strip()
        braces = [c for c in STRING.sub('""', code) if c in "{}"]
        opened = False
        for brace in braces:
            if brace == "{":
                stack.append(key if not opened else None)
                opened = True
            elif stack:
                stack.pop()
        if key is not None:
            path = (*stack[:-1], key) if opened and braces[-1] == "{" else (*stack, key)
            yield Member(path, value, opened)


def strip_comments(line: str, in_comment: bool) -> tuple[str, bool]:
    """The line without its comments (`/* */`, which may span lines, and `//`), string
    literals kept whole; and whether a block comment is still open at its end."""
    out: list[str] = []
    i = 0
    while i < len(line):
        if in_comment:
            end = line.find("*/", i)
            if end < 0:
                break
            i, in_comment = end + 2, False
        elif line[i] in "\"'":
            literal = STRING.match(line, i)
            end = literal.end() if literal else len(line)
            out.append(line[i:end])
            i = end
        elif line.startswith("/*", i):
            i, in_comment = i + 2, True
        elif line.startswith("//", i):
            break
        else:
            out.append(line[i])
            i += 1
    return "".join(out), in_comment


@dataclass
class ResponseType:
    """One generated response: its media types with their TypeScript types, or none."""

    where: str
    status: str
    media: dict[str, str] = field(default_factory=dict)
    content_never: bool = False
    has_content: bool = False
    ref: str | None = None


def responses(declarations: str) -> tuple[list[ResponseType], dict[str, ResponseType], set[str]]:
    """The responses of every operation (`operations[id]`, or inline under `paths` for an
    operation without an id), the shared ones (`components["responses"]`), and the names of
    schemas that are themselves `unknown`."""
    by_operation: dict[tuple[str, str], ResponseType] = {}
    shared: dict[str, ResponseType] = {}
    unknown_schemas: set[str] = set()

    def response_at(
        path: tuple[str | None, ...],
    ) -> tuple[ResponseType | None, tuple[str | None, ...]]:
        """The response a member belongs to, and the member's path below the response."""
        if len(path) >= 4 and path[0] == "operations" and path[2] == "responses":
            where, status, rest = str(path[1]), str(path[3]), path[4:]
        elif len(path) >= 5 and path[0] == "paths" and path[3] == "responses":
            where, status, rest = f"{str(path[2]).upper()} {path[1]}", str(path[4]), path[5:]
        elif len(path) >= 3 and path[:2] == ("components", "responses"):
            name = str(path[2])
            return shared.setdefault(name, ResponseType(f"components.responses.{name}", "")), path[
                3:
            ]
        else:
            return None, ()
        response = by_operation.setdefault((where, status), ResponseType(where, status))
        return response, rest

    for member in members(declarations):
        if member.path[:2] == ("components", "schemas") and len(member.path) == 3:
            if member.value in {"unknown", "any"}:
                unknown_schemas.add(str(member.path[2]))
            continue
        response, rest = response_at(member.path)
        if response is None:
            continue
        if not rest and not member.opens_block:
            response.ref = member.value
        elif rest == ("content",):
            response.has_content = True
            response.content_never = member.value == "never"
        elif len(rest) == 2 and rest[0] == "content" and rest[1] is not None:
            response.media[rest[1]] = member.value
    return list(by_operation.values()), shared, unknown_schemas


def untyped_error_bodies(
    declarations: str, names: Mapping[str, str] | None = None
) -> tuple[list[str], int]:
    """What is wrong with each error response (4xx, 5xx, default) of the generated client,
    one line each, and how many error responses were read. `names`: a readable name for an
    operation id."""
    names = names or {}
    operation_responses, shared, unknown_schemas = responses(declarations)
    failures: list[str] = []
    checked = 0
    for response in operation_responses:
        if not ERROR_STATUS.match(response.status):
            continue
        checked += 1
        label = f"{names.get(response.where, response.where)} {response.status}"
        target = response
        if response.ref is not None:
            ref = COMPONENT_REF.match(response.ref)
            if ref is None or ref["kind"] != "responses" or ref["name"] not in shared:
                failures.append(f"{label}: is {response.ref}")
                continue
            target = shared[ref["name"]]
        if target.content_never or not target.has_content:
            failures.append(f"{label}: no body (content?: never)")
            continue
        for media, ts_type in sorted(target.media.items()):
            ref = COMPONENT_REF.match(ts_type)
            if ts_type in {"unknown", "any", "never"}:
                failures.append(f'{label}: "{media}": {ts_type}')
            elif ref and ref["kind"] == "schemas" and ref["name"] in unknown_schemas:
                failures.append(f'{label}: "{media}": {ts_type}, which is unknown')
        if PROBLEM_MEDIA not in target.media:
            failures.append(f"{label}: no {PROBLEM_MEDIA} body (only {sorted(target.media)})")
    return sorted(failures), checked


# --- Node.js and the temporary project ------------------------------------------------------


def node_missing() -> str | None:
    """Why the npm tools cannot run here, or None."""
    missing = [tool for tool in ("node", "npm", "npx") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not on PATH: install Node.js >= {MIN_NODE_MAJOR} with npm"
    version = subprocess.run(
        ["node", "--version"], capture_output=True, text=True, timeout=60, check=False
    ).stdout.strip()
    major = re.match(r"v(\d+)\.", version)
    if major is None or int(major[1]) < MIN_NODE_MAJOR:
        return f"node {version or '(no version)'} is older than {MIN_NODE_MAJOR}"
    return None


def openapi_document(data_dir: Path) -> dict[str, Any]:
    """The document the app serves at /openapi.json, built in process (no server, no storage:
    the app opens its database and Redis only in its lifespan)."""
    backend = Backend(
        "sqlite", f"sqlite+aiosqlite:///{data_dir / 'mfa.db'}", None, data_dir, generate_data_key()
    )
    document: dict[str, Any] = create_app(settings_for(backend)).openapi()
    return document


@dataclass(frozen=True)
class GeneratedClient:
    project: Path
    document: dict[str, Any]
    declarations: str


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> GeneratedClient:
    """This folder's npm project copied to a temporary directory, its locked tools installed,
    and `schema.d.ts` generated there from the app's document."""
    if reason := node_missing():
        if REQUIRE_SERVICES:
            pytest.fail(f"MFA_TEST_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
        pytest.skip(f"{reason} (the generated TypeScript client check needs it)")
    project = tmp_path_factory.mktemp("typescript-client")
    for name in PROJECT_FILES:
        shutil.copy2(HERE / name, project / name)
    document = openapi_document(tmp_path_factory.mktemp("typescript-data"))
    (project / "openapi.json").write_text(json.dumps(document, indent=2), encoding="utf-8")
    command_must_succeed(
        ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--prefer-offline"],
        project,
        INSTALL_TIMEOUT,
    )
    command_must_succeed(
        ["npx", "--no", "--", "openapi-typescript", "openapi.json", "-o", "schema.d.ts"],
        project,
        TOOL_TIMEOUT,
    )
    declarations = (project / "schema.d.ts").read_text(encoding="utf-8")
    return GeneratedClient(project, document, declarations)


# --- the checks -----------------------------------------------------------------------------


def error_responses_in(document: dict[str, Any]) -> set[tuple[str, str]]:
    """(where, status) of every documented error response, named as `responses()` names
    them: the operationId, else `METHOD /path`."""
    found: set[tuple[str, str]] = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            where = operation.get("operationId") or f"{method.upper()} {path}"
            for status in operation["responses"]:
                if ERROR_STATUS.match(status):
                    found.add((where, status))
    return found


def operation_names(document: dict[str, Any]) -> dict[str, str]:
    """`METHOD /path (operationId)` for each operation id."""
    return {
        operation["operationId"]: f"{method.upper()} {path} ({operation['operationId']})"
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "operationId" in operation
    }


def test_every_error_response_of_the_document_is_read(generated: GeneratedClient) -> None:
    """The d.ts reading below is not vacuous: it finds exactly the document's error responses."""
    operation_responses, _, _ = responses(generated.declarations)
    read = {(r.where, r.status) for r in operation_responses if ERROR_STATUS.match(r.status)}
    expected = error_responses_in(generated.document)
    assert expected, "the document lists no error responses"
    assert read == expected


def test_every_error_body_is_typed(generated: GeneratedClient) -> None:
    names = operation_names(generated.document)
    failures, checked = untyped_error_bodies(generated.declarations, names)
    assert checked > 0
    assert not failures, (
        f"{len(failures)} of {checked} error responses have no typed {PROBLEM_MEDIA} body "
        "in the generated client:\n" + "\n".join(failures)
    )


def test_the_generated_client_type_checks(generated: GeneratedClient) -> None:
    result = run_command(
        ["npx", "--no", "--", "tsc", "--noEmit", "-p", "tsconfig.json"],
        generated.project,
        TOOL_TIMEOUT,
    )
    assert result.returncode == 0, (
        f"tsc --noEmit on client-check.ts and the generated schema.d.ts exited "
        f"{result.returncode}:\n{result.stdout}{result.stderr}"
    )


# The reader itself, on what openapi-typescript writes for the cases it must catch.
SAMPLE = """\
export interface components {
    schemas: {
        /** Problem {with braces} */
        Problem: {
            code: string;
            /* a { comment */ type: "http://example.com/{" | "'}'";
        };
        Loose: unknown;
    };
    responses: {
        /** @description Not found */
        NotFound: {
            headers: {
                [name: string]: unknown;
            };
            content: {
                "application/problem+json": unknown;
            };
        };
    };
}
export interface operations {
    login: {
        responses: {
            200: {
                content: {
                    "application/json": components["schemas"]["Problem"];
                };
            };
            401: {
                content: {
                    "application/problem+json": components["schemas"]["Problem"] & {
                        /** @enum {string} */
                        code: "invalid_credentials" | "}";
                    };
                };
            };
            404: components["responses"]["NotFound"];
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            422: {
                content: {
                    "application/problem+json": (components["schemas"]["Problem"] & {
                        code: "validation_error";
                    }) | (components["schemas"]["Problem"] & {
                        code: "weak_password";
                    });
                };
            };
            429: {
                content: {
                    "application/json": components["schemas"]["Problem"];
                };
            };
            "5XX": {
                content: {
                    "application/problem+json": components["schemas"]["Loose"];
                };
            };
        };
    };
}
"""


def test_the_reader_finds_each_kind_of_untyped_error_body() -> None:
    failures, checked = untyped_error_bodies(SAMPLE)
    assert checked == 6
    assert failures == [
        'login 404: "application/problem+json": unknown',
        "login 409: no body (content?: never)",
        "login 429: no application/problem+json body (only ['application/json'])",
        'login 5XX: "application/problem+json": components["schemas"]["Loose"], which is unknown',
    ]
