"""The OpenAPI document says what the service does: problem+json error bodies with their
codes and headers, readable operation ids, typed answers, examples; and real answers match
what it says."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.openapi_check import errors, operations, resolve, response_schema
from tests.support import (
    PASSWORD,
    Backend,
    FakeClock,
    bearer,
    mfa_user,
    new_email,
    registered_login,
    running_app,
    settings_for,
    totp_code,
)

PROBLEM_JSON = "application/problem+json"
# The only operations that touch neither the database nor Redis (and so never answer 503).
NO_BACKEND = {("/healthz", "get"), ("/.well-known/openid-configuration", "get")}


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body


def codes(document: dict[str, Any], path: str, method: str, status: int) -> set[str]:
    """The `code` values the document lists for one error answer."""
    schema = resolve(document, response_schema(document, path, method, status, PROBLEM_JSON))
    found: set[str] = set()
    for variant in schema.get("oneOf", [schema]):
        for part in variant["allOf"]:
            found.update(part.get("properties", {}).get("code", {}).get("enum", []))
    return found


def assert_matches(document: dict[str, Any], r: httpx.Response, path: str, method: str) -> None:
    """A real answer against what the document says of its path, method and status."""
    response = document["paths"][path][method]["responses"].get(str(r.status_code))
    assert response is not None, f"{method} {path}: {r.status_code} is not documented"
    media_type = r.headers["content-type"].split(";")[0]
    assert media_type in response.get("content", {}), f"{path} {r.status_code}: {media_type}"
    schema = response["content"][media_type]["schema"]
    assert not errors(document, schema, r.json()), errors(document, schema, r.json())
    for name, header in response.get("headers", {}).items():
        if header.get("required"):
            assert name in r.headers, f"{path} {r.status_code}: no {name}"


# --- the document ---------------------------------------------------------------------------


async def test_every_error_is_problem_json_with_a_schema(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            if status.startswith("2"):
                continue
            content = response.get("content", {})
            assert list(content) == [PROBLEM_JSON], f"{method} {path} {status}: {list(content)}"
            schema = content[PROBLEM_JSON].get("schema")
            assert schema, f"{method} {path} {status}: no schema"
            assert codes(document, path, method, int(status)), f"{method} {path} {status}"
            for name, example in content[PROBLEM_JSON]["examples"].items():
                assert not errors(document, schema, example["value"]), (path, status, name)


async def test_422_is_the_validation_problem_the_service_sends(document: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in str(document)
    assert "ValidationError" not in document["components"]["schemas"]
    for path, method, operation in operations(document):
        takes_input = "requestBody" in operation or operation.get("parameters")
        if takes_input:
            assert "validation_error" in codes(document, path, method, 422), f"{method} {path}"
        else:
            assert "422" not in operation["responses"], f"{method} {path}"
    # Registration's 422 is either a validation problem (with errors[]) or a weak password.
    assert codes(document, "/auth/register", "post", 422) == {"validation_error", "weak_password"}
    problem = document["components"]["schemas"]["ValidationProblem"]
    assert "errors" in problem["required"]


async def test_operation_ids_are_readable_and_unique(document: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    for operation_id in ids:
        assert re.fullmatch(r"[a-z][a-zA-Z0-9]*", operation_id), operation_id
    by_route = {(p, m): o["operationId"] for p, m, o in operations(document)}
    assert by_route[("/auth/register", "post")] == "register"
    assert by_route[("/auth/login", "post")] == "login"
    assert by_route[("/mfa/challenge", "post")] == "answerChallenge"
    assert by_route[("/mfa/totp/setup", "post")] == "setupTotp"
    assert by_route[("/mfa/totp/confirm", "post")] == "confirmTotp"
    assert by_route[("/mfa/webauthn/registrations", "post")] == "registerWebAuthnCredential"
    assert by_route[("/auth/passkey", "post")] == "passkeyLogin"
    assert not any(
        name.startswith("Body_") and "_post" in name for name in document["components"]["schemas"]
    )


async def test_headers_and_503_are_documented(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        responses = operation["responses"]
        for status in ("429", "503"):
            if status in responses:
                header = responses[status]["headers"]["Retry-After"]
                assert header["required"], f"{method} {path} {status}"
        if "401" in responses:
            with_challenge = {"invalid_token", "insufficient_user_authentication", "invalid_client"}
            if codes(document, path, method, 401) & with_challenge:
                assert "WWW-Authenticate" in responses["401"]["headers"], f"{method} {path}"
        if (path, method) not in NO_BACKEND:
            assert "503" in responses, f"{method} {path} touches the database or Redis"
        assert "413" in responses


async def test_security_alternatives(document: dict[str, Any]) -> None:
    challenge = document["paths"]["/mfa/challenge"]["post"]
    # The Bearer challenge token, or none (the body field).
    assert {} in challenge["security"]
    assert any("ChallengeToken" in s for s in challenge["security"])
    introspect = document["paths"]["/oauth/introspect"]["post"]
    assert {} in introspect["security"]
    assert any("ClientSecretBasic" in s for s in introspect["security"])
    form = resolve(
        document,
        introspect["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"],
    )
    assert {"token", "client_id", "client_secret"} <= set(form["properties"])
    me = document["paths"]["/users/me"]["get"]
    assert me["security"] == [{"HTTPBearer": []}]
    # The enrollment routes: an access token, or an enrollment token (MFA_REQUIRE_MFA).
    for path in ("/mfa/totp/setup", "/mfa/totp/confirm", "/mfa/webauthn/registrations"):
        assert document["paths"][path]["post"]["security"] == [
            {"HTTPBearer": []},
            {"EnrollmentToken": []},
        ]


async def test_login_answer_is_a_union_on_status(document: dict[str, Any]) -> None:
    schema = response_schema(document, "/auth/login", "post", 200, "application/json")
    assert schema["discriminator"]["propertyName"] == "status"
    assert set(schema["discriminator"]["mapping"]) == {
        "authenticated",
        "mfa_required",
        "mfa_enrollment_required",
    }
    for variant in schema["oneOf"]:
        assert "status" in resolve(document, variant)["required"]


async def test_answers_are_typed(document: dict[str, Any]) -> None:
    for path in ("/.well-known/jwks.json", "/.well-known/openid-configuration"):
        schema = resolve(document, response_schema(document, path, "get", 200, "application/json"))
        assert schema.get("properties"), path
    introspect = response_schema(document, "/oauth/introspect", "post", 200, "application/json")
    assert len(introspect["anyOf"]) == 2
    # W3C options documented with their members, not as `{}`.
    options = resolve(
        document,
        response_schema(document, "/auth/passkey/options", "post", 200, "application/json"),
    )
    assert {"challenge", "rpId", "allowCredentials"} <= set(options["properties"])


async def test_descriptions_tags_and_examples(document: dict[str, Any]) -> None:
    tags = {tag["name"]: tag for tag in document["tags"]}
    assert all(tag.get("description") for tag in tags.values())
    for path, method, operation in operations(document):
        assert set(operation["tags"]) <= set(tags), f"{method} {path}"
        assert len(operation["tags"]) == 1, f"{method} {path}"
        assert operation.get("description"), f"{method} {path} has no description"
        bodies = [operation.get("requestBody", {})] + [
            r for s, r in operation["responses"].items() if s.startswith("2")
        ]
        for body in bodies:
            for media_type, content in body.get("content", {}).items():
                if "json" not in media_type and "form" not in media_type:
                    continue
                schema = resolve(document, content["schema"])
                union = schema.get("oneOf", schema.get("anyOf", []))
                variants = [resolve(document, v) for v in union if v.get("type") != "null"]
                variants = variants or [schema]
                has_examples = (
                    "examples" in content
                    or "examples" in schema
                    or all("examples" in v for v in variants)
                )
                assert has_examples, f"{method} {path} {media_type}: no example"


async def test_examples_match_their_schemas(document: dict[str, Any]) -> None:
    for name, schema in document["components"]["schemas"].items():
        for example in schema.get("examples", []):
            assert not errors(document, schema, example), (name, errors(document, schema, example))


async def test_exactly_one_factor_is_documented_as_the_service_checks_it(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    schema = {"$ref": "#/components/schemas/FactorProof"}
    assert not errors(document, schema, {"code": "123456", "backup_code": None})
    _, tokens = await registered_login(client)
    for body in ({}, {"code": None}, {"code": "123456", "backup_code": "7k3qz-9wm2x"}):
        assert errors(document, schema, body), body
        r = await client.post("/mfa/step-up", json=body, headers=bearer(tokens["access_token"]))
        assert r.status_code == 422, body
        assert_matches(document, r, "/mfa/step-up", "post")


async def test_swagger_ui_keeps_authorization(client: httpx.AsyncClient) -> None:
    page = (await client.get("/docs")).text
    assert '"persistAuthorization": true' in page


# --- real answers against the document ------------------------------------------------------


async def test_discovery_has_the_openid_fields(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    r = await client.get("/.well-known/openid-configuration")
    assert_matches(document, r, "/.well-known/openid-configuration", "get")
    body = r.json()
    assert body["issuer"] == "http://mfa.test"
    assert body["jwks_uri"] == "http://mfa.test/.well-known/jwks.json"
    assert body["subject_types_supported"] == ["public"]
    assert body["id_token_signing_alg_values_supported"] == ["ES256"]
    assert body["response_types_supported"] == []  # no authorization endpoint: none
    assert body["introspection_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
    ]
    assert_matches(
        document, await client.get("/.well-known/jwks.json"), "/.well-known/jwks.json", "get"
    )


async def test_real_errors_match_the_document(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    invalid = await client.post("/auth/login", json={"email": "a@example.com", "password": 1})
    assert invalid.status_code == 422
    assert invalid.json()["errors"]
    assert_matches(document, invalid, "/auth/login", "post")

    weak = await client.post("/auth/register", json={"email": new_email(), "password": "password"})
    assert weak.status_code == 422
    assert weak.json()["code"] == "weak_password"
    assert_matches(document, weak, "/auth/register", "post")

    wrong = await client.post("/auth/login", json={"email": new_email(), "password": "x" * 12})
    assert wrong.status_code == 401
    assert_matches(document, wrong, "/auth/login", "post")

    anonymous = await client.get("/users/me")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert_matches(document, anonymous, "/users/me", "get")

    _, tokens = await registered_login(client)
    cursor = await client.get(
        "/users/me/events?cursor=nonsense", headers=bearer(tokens["access_token"])
    )
    assert cursor.status_code == 400
    assert_matches(document, cursor, "/users/me/events", "get")

    missing = await client.patch(
        "/mfa/webauthn/credentials/0b8c6a2e-5d7f-4a35-9a3e-2f1c4d5e6f70",
        json={"name": "x"},
        headers=bearer(tokens["access_token"]),
    )
    assert missing.status_code == 404
    assert_matches(document, missing, "/mfa/webauthn/credentials/{credential_id}", "patch")

    no_challenge = await client.post("/mfa/challenge", json={"code": "123456"})
    assert no_challenge.status_code == 401
    assert_matches(document, no_challenge, "/mfa/challenge", "post")


async def test_an_unparsable_body_is_the_documented_422(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    # Found by the fuzzer: JSON that is not UTF-8, or a broken multipart form, answered an
    # undocumented 400 `http_error`; malformed JSON was already a 422.
    not_utf8 = await client.post(
        "/auth/login",
        content=b'{"email": "\xff", "password": "x"}',
        headers={"Content-Type": "application/json"},
    )
    assert not_utf8.status_code == 422
    assert not_utf8.json()["errors"] == [
        {"loc": ["body"], "msg": "The body could not be parsed.", "type": "json_invalid"}
    ]
    assert_matches(document, not_utf8, "/auth/login", "post")
    broken_form = await client.post(
        "/oauth/introspect",
        content=b"--x\r\nnot a part",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert broken_form.status_code in {401, 422}, broken_form.text  # never a 400 nor a 5xx
    assert_matches(document, broken_form, "/oauth/introspect", "post")


async def test_real_answers_match_the_document(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    email = new_email()
    created = await client.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert_matches(document, created, "/auth/register", "post")
    login = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert login.json()["status"] == "authenticated"
    assert_matches(document, login, "/auth/login", "post")
    auth = bearer(login.json()["access_token"])
    for path in ("/users/me", "/mfa", "/users/me/events", "/mfa/webauthn/credentials"):
        assert_matches(document, await client.get(path, headers=auth), path, "get")
    setup = await client.post("/mfa/totp/setup", headers=auth)
    assert_matches(document, setup, "/mfa/totp/setup", "post")
    options = await client.post("/mfa/webauthn/registrations/options", json={}, headers=auth)
    assert_matches(document, options, "/mfa/webauthn/registrations/options", "post")
    passkey = await client.post("/auth/passkey/options")
    assert_matches(document, passkey, "/auth/passkey/options", "post")
    refreshed = await client.post(
        "/auth/refresh", json={"refresh_token": login.json()["refresh_token"]}
    )
    assert_matches(document, refreshed, "/auth/refresh", "post")


async def test_a_challenge_matches_the_document(
    client: httpx.AsyncClient, clock: FakeClock, document: dict[str, Any]
) -> None:
    user = await mfa_user(client, clock)
    r = await client.post("/auth/login", json={"email": user.email, "password": PASSWORD})
    assert r.json()["status"] == "mfa_required"
    assert_matches(document, r, "/auth/login", "post")
    wrong = await client.post(
        "/mfa/challenge",
        json={"code": "000000"},
        headers=bearer(r.json()["challenge_token"]),  # the header alternative
    )
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "invalid_code"
    assert_matches(document, wrong, "/mfa/challenge", "post")
    answered = await client.post(
        "/mfa/challenge",
        json={
            "challenge_token": r.json()["challenge_token"],
            "code": totp_code(user.secret, clock),
        },
    )
    assert answered.status_code == 200
    assert_matches(document, answered, "/mfa/challenge", "post")


async def test_enrollment_answers_match_the_document(
    backend: Backend, clock: FakeClock, document: dict[str, Any]
) -> None:
    async with running_app(settings_for(backend, require_mfa=True), clock) as client:
        email = new_email()
        await client.post("/auth/register", json={"email": email, "password": PASSWORD})
        login = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert login.json()["status"] == "mfa_enrollment_required"
        assert_matches(document, login, "/auth/login", "post")
        auth = bearer(login.json()["enrollment_token"])
        setup = await client.post("/mfa/totp/setup", headers=auth)
        confirmed = await client.post(
            "/mfa/totp/confirm",
            headers=auth,
            json={"code": totp_code(setup.json()["secret"], clock)},
        )
        assert "access_token" in confirmed.json()
        assert_matches(document, confirmed, "/mfa/totp/confirm", "post")
        sessions = await client.get(
            "/users/me/sessions", headers=bearer(confirmed.json()["access_token"])
        )
        assert_matches(document, sessions, "/users/me/sessions", "get")


# --- limits and introspection need their own settings ----------------------------------------

CLIENT_ID = "withdrawals"
SECRET = "s3cret-for-the-withdrawals-service"


@pytest.fixture
async def limited(backend: Backend, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(
        backend, register_ip_max=1, introspection_clients=f"{CLIENT_ID}:{SECRET}"
    )
    async with running_app(settings, clock) as c:
        yield c


async def test_429_and_introspection_match_the_document(limited: httpx.AsyncClient) -> None:
    document = (await limited.get("/openapi.json")).json()
    _, tokens = await registered_login(limited)
    refused = await limited.post(
        "/auth/register", json={"email": new_email(), "password": PASSWORD}
    )
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert_matches(document, refused, "/auth/register", "post")

    basic = "Basic " + base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    inactive = await limited.post(
        "/oauth/introspect", data={"token": "nonsense"}, headers={"Authorization": basic}
    )
    assert inactive.json() == {"active": False}
    assert_matches(document, inactive, "/oauth/introspect", "post")
    posted = await limited.post(
        "/oauth/introspect",
        data={"token": "nonsense", "client_id": CLIENT_ID, "client_secret": SECRET},
    )
    assert posted.json() == {"active": False}
    active = await limited.post(
        "/oauth/introspect",
        data={"token": tokens["access_token"]},
        headers={"Authorization": basic},
    )
    assert active.json()["active"] is True
    assert_matches(document, active, "/oauth/introspect", "post")
    wrong = await limited.post(
        "/oauth/introspect", data={"token": "x", "client_id": CLIENT_ID, "client_secret": "no"}
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    assert_matches(document, wrong, "/oauth/introspect", "post")
    missing = await limited.post("/oauth/introspect", headers={"Authorization": basic})
    assert missing.status_code == 400
    assert_matches(document, missing, "/oauth/introspect", "post")
