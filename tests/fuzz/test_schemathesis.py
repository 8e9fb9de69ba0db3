"""Schemathesis against the app, in-process, on SQLite and PostgreSQL: every operation of the
document the app serves, with generated data that fits the document (positive) and data that
does not (negative), from its examples, its boundaries (the coverage phase) and at random.

Every response must not be a server error, and must be what the document says: a documented
status, the documented content type, a body that fits the schema of that status, and the
documented headers. Who the fuzzer acts as, and how rate limits are kept from answering every
case with 429, is in harness.py.

Deterministic by default (a fixed seed: CI does not pass or fail by luck). To fuzz harder:
MFA_FUZZ_MAX_EXAMPLES=300 MFA_FUZZ_SEED=7; MFA_FUZZ_CONFORMANCE=0 keeps only the
server-error check.
"""

from __future__ import annotations

import copy
import os
from typing import TYPE_CHECKING

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import CheckFunction
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fuzz.harness import BASE_URL, Fuzzing, openapi_document

if TYPE_CHECKING:
    from schemathesis.specs.openapi.schemas import OpenApiCase

SEED = int(os.environ.get("MFA_FUZZ_SEED", "13"))
# Per operation, for the random (fuzzing) phase; the examples and coverage phases come on top.
MAX_EXAMPLES = int(os.environ.get("MFA_FUZZ_MAX_EXAMPLES", "20"))
CONFORMANCE = os.environ.get("MFA_FUZZ_CONFORMANCE", "1") == "1"

CHECKS: list[CheckFunction] = [not_a_server_error]
if CONFORMANCE:
    CHECKS += [
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        response_headers_conformance,
    ]

# Made at collection, so each operation is a test of its own; the app is checked to serve it.
DOCUMENT = openapi_document()

schema = schemathesis.openapi.from_dict(
    copy.deepcopy(DOCUMENT),  # Schemathesis changes the dict it is given
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "base-url": BASE_URL,
            "generation": {"mode": "all", "max-examples": MAX_EXAMPLES},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
        }
    ),
)


def test_fuzzed_document_is_the_served_one(fuzz: Fuzzing) -> None:
    assert fuzz.openapi() == DOCUMENT


@schema.parametrize()
@settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_api(case: OpenApiCase, fuzz: Fuzzing) -> None:
    response = fuzz.call(case)
    case.validate_response(response, checks=CHECKS)
