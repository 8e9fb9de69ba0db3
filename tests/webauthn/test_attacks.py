"""WebAuthn attacks, each made through HTTP against the real service (SPEC §4, §7).

Every test sends the forged or misplaced response itself and checks the refusal, then (where it
matters) that the honest response still works, so a refusal for some other reason cannot pass
for the rule. The software authenticator's overrides (`origin=`, `rp_id=`, `uv=`, `up=`,
`credential=`, `sign_count=`) make responses that are correctly signed and wrong in exactly one
way; `tamper_signature` makes one that is not signed by the key.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import cbor2
import httpx
import pytest

from tests.support import PASSWORD, FakeClock, bearer, login, registered_login
from tests.webauthn.authenticator import (
    SoftAuthenticator,
    b64url_decode,
    b64url_encode,
    tamper_signature,
)
from tests.webauthn.flows import (
    ORIGIN,
    KeyUser,
    answer,
    creation_options,
    key_challenge,
    key_login,
    key_user,
    passkey_login,
    passkey_options,
    post_registration,
    register_key,
    step_up_options,
)

pytestmark = pytest.mark.redis_cluster

EVIL_ORIGIN = "http://evil.test"
EVIL_RP_ID = "evil.test"
INSUFFICIENT = 'Bearer error="insufficient_user_authentication", max_age=300'


def problem(r: httpx.Response) -> tuple[int, str]:
    """(status, stable code) of an error answer."""
    return r.status_code, r.json()["code"]


def synced_passkey() -> SoftAuthenticator:
    """A counter that stays 0 (synced passkeys): the counter cannot refuse a replay, so only the
    single use of the challenge can."""
    return SoftAuthenticator(origin=ORIGIN, backup_eligible=True, backed_up=True, counter_step=0)


async def event_types(client: httpx.AsyncClient, token: str) -> list[str]:
    r = await client.get("/users/me/events?limit=100", headers=bearer(token))
    assert r.status_code == 200, r.text
    return [e["type"] for e in r.json()["items"]]


async def credential_ids(client: httpx.AsyncClient, token: str) -> list[str]:
    r = await client.get("/mfa/webauthn/credentials", headers=bearer(token))
    assert r.status_code == 200, r.text
    return [item["id"] for item in r.json()["items"]]


async def reauthenticate(client: httpx.AsyncClient, token: str) -> str:
    """A fresh auth_time for the same session (users without a second factor)."""
    r = await client.post(
        "/auth/reauthenticate", headers=bearer(token), json={"password": PASSWORD}
    )
    assert r.status_code == 200, r.text
    fresh: str = r.json()["access_token"]
    return fresh


async def step_up(
    client: httpx.AsyncClient, token: str, assertion: dict[str, Any]
) -> httpx.Response:
    return await client.post("/mfa/step-up", headers=bearer(token), json={"webauthn": assertion})


def claiming_credential_id(response: dict[str, Any], credential_id: bytes) -> dict[str, Any]:
    """A registration response rewritten to attest `credential_id` (with its own public key).

    `none` attestation signs nothing, so anyone can claim any credential id: the public ids
    in someone's `allowCredentials` are all an attacker needs."""
    attestation = cbor2.loads(b64url_decode(response["response"]["attestationObject"]))
    auth_data: bytes = attestation["authData"]
    at = 32 + 1 + 4 + 16  # rpIdHash, flags, signCount, aaguid: then length and credential id
    (length,) = struct.unpack(">H", auth_data[at : at + 2])
    attestation["authData"] = (
        auth_data[:at]
        + struct.pack(">H", len(credential_id))
        + credential_id
        + auth_data[at + 2 + length :]
    )
    forged_id = b64url_encode(credential_id)
    return {
        **response,
        "id": forged_id,
        "rawId": forged_id,
        "response": {
            **response["response"],
            "attestationObject": b64url_encode(cbor2.dumps(attestation)),
        },
    }


# --- origin and relying party ----------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        EVIL_ORIGIN,
        "https://mfa.test",  # another scheme
        "http://mfa.test:8080",  # another port
        "http://login.mfa.test",  # a subdomain: the RP ID would allow it, the origins do not
    ],
)
async def test_a_response_from_another_origin_is_refused(
    client: httpx.AsyncClient, origin: str
) -> None:
    # A phishing page relays the challenge; the browser writes its own origin into
    # clientDataJSON, and the signature covers it.
    user = await key_user(client)
    token, options = await key_challenge(client, user.email)
    r = await answer(client, token, user.authenticator.get(options, origin=origin))
    assert problem(r) == (401, "invalid_code")
    assert "access_token" not in r.text
    await key_login(client, user)  # the key itself is fine

    _, tokens = await registered_login(client)
    options = await creation_options(client, tokens["access_token"])
    attestation = SoftAuthenticator(origin=ORIGIN).create(options, origin=origin)
    r = await post_registration(client, tokens["access_token"], attestation)
    assert problem(r) == (401, "invalid_webauthn_response")
    assert await credential_ids(client, tokens["access_token"]) == []


async def test_a_response_for_another_relying_party_is_refused(client: httpx.AsyncClient) -> None:
    # The authenticator hashes the RP ID it was asked for into authenticatorData; a credential
    # scoped to another site must not count here, even with our origin in clientDataJSON.
    user = await key_user(client)
    token, options = await key_challenge(client, user.email)
    r = await answer(client, token, user.authenticator.get(options, rp_id=EVIL_RP_ID))
    assert problem(r) == (401, "invalid_code")
    await key_login(client, user)

    _, tokens = await registered_login(client)
    options = await creation_options(client, tokens["access_token"])
    attestation = SoftAuthenticator(origin=ORIGIN).create(options, rp_id=EVIL_RP_ID)
    r = await post_registration(client, tokens["access_token"], attestation)
    assert problem(r) == (401, "invalid_webauthn_response")
    assert await credential_ids(client, tokens["access_token"]) == []


# --- challenges: binding, single use, replay ---------------------------------------------------


async def test_an_assertion_for_another_challenges_options_is_refused(
    client: httpx.AsyncClient,
) -> None:
    user = await key_user(client)
    token_a, options_a = await key_challenge(client, user.email)
    token_b, options_b = await key_challenge(client, user.email)

    # Signed by the right key, but over A's challenge: B must not accept it.
    r = await answer(client, token_b, user.authenticator.get(options_a))
    assert problem(r) == (401, "invalid_code")
    # B's options were consumed by that wrong answer (first use, success or not): the right
    # assertion for them is refused now too.
    r = await answer(client, token_b, user.authenticator.get(options_b))
    assert problem(r) == (401, "invalid_code")
    # A's options were not touched by B's answer.
    r = await answer(client, token_a, user.authenticator.get(options_a))
    assert r.status_code == 200, r.text


async def test_a_used_assertion_is_not_accepted_again(client: httpx.AsyncClient) -> None:
    user = await key_user(client, synced_passkey())
    token, options = await key_challenge(client, user.email)
    used = user.authenticator.get(options)
    assert (await answer(client, token, used)).status_code == 200

    # Replayed on a new challenge: signed, counter 0 (accepted for synced passkeys), but for
    # an old challenge.
    token, _ = await key_challenge(client, user.email)
    r = await answer(client, token, used)
    assert problem(r) == (401, "invalid_code")
    await key_login(client, user)


async def test_the_same_assertion_sent_concurrently_wins_once(client: httpx.AsyncClient) -> None:
    user = await key_user(client, synced_passkey())
    token, options = await key_challenge(client, user.email)
    assertion = user.authenticator.get(options)
    answers = await asyncio.gather(*(answer(client, token, assertion) for _ in range(4)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 401, 401, 401], [a.text for a in answers]

    # A step-up has no challenge token to burn: there the options' single use is all that
    # stands between one assertion and two fresh tokens.
    tokens = await key_login(client, user)
    r = await step_up_options(client, tokens["access_token"])
    assertion = user.authenticator.get(r.json())
    answers = await asyncio.gather(
        *(step_up(client, tokens["access_token"], assertion) for _ in range(4))
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 401, 401, 401], [a.text for a in answers]


async def test_another_users_key_cannot_answer(client: httpx.AsyncClient) -> None:
    victim = await key_user(client)
    attacker = await key_user(client)
    token, options = await key_challenge(client, victim.email)
    # The attacker knows the victim's password; their own key answers the victim's challenge.
    own = attacker.authenticator.credentials[0]
    r = await answer(client, token, attacker.authenticator.get(options, credential=own))
    assert problem(r) == (401, "invalid_code")
    assert "access_token" not in r.text


async def test_options_expire(client: httpx.AsyncClient, clock: FakeClock) -> None:
    user = await key_user(client)
    token, options = await key_challenge(client, user.email)
    clock.advance(301)  # the challenge and its options: 300 s
    r = await answer(client, token, user.authenticator.get(options))
    assert problem(r) == (401, "challenge_expired")

    # Step-up options have no challenge token around them: their own expiry decides.
    tokens = await key_login(client, user)
    options = (await step_up_options(client, tokens["access_token"])).json()
    clock.advance(299)
    r = await step_up(client, tokens["access_token"], user.authenticator.get(options))
    assert r.status_code == 200, r.text  # still within 300 s
    options = (await step_up_options(client, tokens["access_token"])).json()
    clock.advance(301)
    r = await step_up(client, tokens["access_token"], user.authenticator.get(options))
    assert problem(r) == (401, "invalid_code")


# --- forged signatures and the attempt limits --------------------------------------------------


async def test_a_forged_signature_is_a_wrong_code_and_five_burn_the_challenge(
    client: httpx.AsyncClient,
) -> None:
    user = await key_user(client)
    token, options = await key_challenge(client, user.email)
    for _ in range(5):
        # The first takes the options with it; the later ones are judged wrong for that
        # reason, and count all the same.
        forged = tamper_signature(user.authenticator.get(options))
        assert problem(await answer(client, token, forged)) == (401, "invalid_code")
    r = await answer(client, token, user.authenticator.get(options))
    assert problem(r) == (401, "challenge_expired")
    types = await event_types(client, user.access_token)
    assert types.count("challenge.failed") == 5
    assert "challenge.succeeded" not in types


async def test_ten_forged_signatures_lock_the_user(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await key_user(client)
    for _ in range(10):  # across challenges: each new login is a new challenge
        token, options = await key_challenge(client, user.email)
        forged = tamper_signature(user.authenticator.get(options))
        assert problem(await answer(client, token, forged)) == (401, "invalid_code")

    # Locked: the right assertion on a new challenge gets 429, without being looked at.
    token, options = await key_challenge(client, user.email)
    r = await answer(client, token, user.authenticator.get(options))
    assert problem(r) == (429, "rate_limited")
    assert 0 < int(r.headers["retry-after"]) <= 900
    assert "access_token" not in r.text

    # Refused attempts do not extend the lock: it ends 900 s after the tenth failure.
    clock.advance(899)
    token, options = await key_challenge(client, user.email)
    r = await answer(client, token, user.authenticator.get(options))
    assert problem(r) == (429, "rate_limited")
    clock.advance(1)
    r = await answer(client, token, user.authenticator.get(options))  # options not used up
    assert r.status_code == 200, r.text


async def test_concurrent_forgeries_across_challenges_get_ten_judged(
    client: httpx.AsyncClient,
) -> None:
    user = await key_user(client)
    forgeries: list[tuple[str, dict[str, Any]]] = []
    for _ in range(5):
        token, options = await key_challenge(client, user.email)
        forgeries += [(token, tamper_signature(user.authenticator.get(options))) for _ in range(4)]
    # 4 per challenge stays under its limit of 5: only the user's limit of 10 applies.
    answers = await asyncio.gather(*(answer(client, t, a) for t, a in forgeries))
    assert (
        sorted(problem(a) for a in answers)
        == [(401, "invalid_code")] * 10 + [(429, "rate_limited")] * 10
    )
    assert all(int(a.headers["retry-after"]) >= 1 for a in answers if a.status_code == 429)

    token, options = await key_challenge(client, user.email)
    r = await answer(client, token, user.authenticator.get(options))
    assert problem(r) == (429, "rate_limited")
    types = await event_types(client, user.access_token)
    assert types.count("challenge.failed") == 10
    assert types.count("factor.locked") == 1


async def test_an_assertion_without_user_presence_is_refused(client: httpx.AsyncClient) -> None:
    # UP clear: malware used the key without anyone touching it.
    user = await key_user(client)
    token, options = await key_challenge(client, user.email)
    r = await answer(client, token, user.authenticator.get(options, up=False))
    assert problem(r) == (401, "invalid_code")
    await key_login(client, user)

    _, tokens = await registered_login(client)
    options = await creation_options(client, tokens["access_token"])
    attestation = SoftAuthenticator(origin=ORIGIN).create(options, up=False)
    r = await post_registration(client, tokens["access_token"], attestation)
    assert problem(r) == (401, "invalid_webauthn_response")


# --- the signature counter ---------------------------------------------------------------------


@pytest.mark.parametrize("rollback", ["equal", "lower", "zero"])
async def test_a_counter_that_does_not_increase_suspends_the_key(
    client: httpx.AsyncClient, rollback: str
) -> None:
    key = SoftAuthenticator(origin=ORIGIN, initial_sign_count=5)
    user = await key_user(client, key)
    await key_login(client, user)
    seen = key.credentials[0].sign_count  # what the service stored: 6
    replayed = {"equal": seen, "lower": seen - 1, "zero": 0}[rollback]
    # A second challenge taken while the key was trusted, to try the genuine key later.
    first, first_options = await key_challenge(client, user.email)
    second, second_options = await key_challenge(client, user.email)

    # A clone of the key (validly signed, its counter behind the original's).
    r = await answer(client, first, key.get(first_options, sign_count=replayed))
    assert problem(r) == (401, "invalid_code")
    assert "webauthn.clone_suspected" in await event_types(client, user.access_token)

    # Which of the two is the original cannot be told: the key is refused from now on, even
    # with a counter ahead of the stored one.
    r = await answer(client, second, key.get(second_options))
    assert problem(r) == (401, "invalid_code")
    body = await login(client, user.email)
    assert body["methods"] == ["backup_code"]  # a suspended key is not offered
    assert "webauthn" not in body

    # Until the user removes it (with a recent second factor: a backup code here) and
    # registers the key again.
    r = await client.post(
        "/mfa/challenge",
        json={"challenge_token": body["challenge_token"], "backup_code": user.backup_codes[0]},
    )
    assert r.status_code == 200, r.text
    fresh = r.json()["access_token"]
    (suspended,) = await credential_ids(client, fresh)
    r = await client.delete(f"/mfa/webauthn/credentials/{suspended}", headers=bearer(fresh))
    assert r.status_code == 204, r.text
    await register_key(client, fresh, key)  # a new credential on the same device
    await key_login(client, KeyUser(user.email, fresh, key, []))


async def test_a_forged_assertion_with_a_low_counter_does_not_suspend_the_key(
    client: httpx.AsyncClient,
) -> None:
    # If the counter were judged before the signature, anyone who knows the password could
    # disable the owner's key with a forgery.
    key = SoftAuthenticator(origin=ORIGIN, initial_sign_count=5)
    user = await key_user(client, key)
    await key_login(client, user)
    token, options = await key_challenge(client, user.email)
    forged = tamper_signature(key.get(options, sign_count=0))
    assert problem(await answer(client, token, forged)) == (401, "invalid_code")
    assert "webauthn.clone_suspected" not in await event_types(client, user.access_token)
    await key_login(client, user)


# --- registration ----------------------------------------------------------------------------


async def test_registration_needs_a_recent_authentication(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    # A stolen, older access token must not bind the thief's authenticator.
    _, tokens = await registered_login(client)
    token = tokens["access_token"]
    clock.advance(200)
    options = await creation_options(client, token)
    attestation = SoftAuthenticator(origin=ORIGIN).create(options)
    clock.advance(101)  # the options are 101 s old, the authentication 301 s
    for r in (
        await post_registration(client, token, attestation),
        await client.post("/mfa/webauthn/registrations/options", headers=bearer(token), json={}),
    ):
        assert problem(r) == (401, "insufficient_user_authentication")
        assert r.headers["www-authenticate"] == INSUFFICIENT
    assert await credential_ids(client, token) == []


async def test_registration_options_are_single_use(client: httpx.AsyncClient) -> None:
    user = await key_user(client)
    token = (await key_login(client, user))["access_token"]  # recent, with mfa
    options = await creation_options(client, token)
    attestation = SoftAuthenticator(origin=ORIGIN).create(options)
    assert (await post_registration(client, token, attestation)).status_code == 201
    # The same attestation again, and another authenticator's for the same options.
    again = await post_registration(client, token, attestation)
    assert problem(again) == (400, "webauthn_not_pending")
    other = await post_registration(client, token, SoftAuthenticator(origin=ORIGIN).create(options))
    assert problem(other) == (400, "webauthn_not_pending")

    # A refused attestation uses its options up as well.
    options = await creation_options(client, token)
    key = SoftAuthenticator(origin=ORIGIN)
    refused = await post_registration(client, token, key.create(options, origin=EVIL_ORIGIN))
    assert problem(refused) == (401, "invalid_webauthn_response")
    r = await post_registration(client, token, key.create(options))
    assert problem(r) == (400, "webauthn_not_pending")
    assert len(await credential_ids(client, token)) == 2


async def test_registration_options_belong_to_their_session(client: httpx.AsyncClient) -> None:
    email, tokens = await registered_login(client)
    mine = tokens["access_token"]
    elsewhere = (await login(client, email))["access_token"]  # the same user, another session
    options = await creation_options(client, mine)
    attestation = SoftAuthenticator(origin=ORIGIN).create(options)
    r = await post_registration(client, elsewhere, attestation)
    assert problem(r) == (400, "webauthn_not_pending")
    # Still pending for the session that asked for them.
    assert (await post_registration(client, mine, attestation)).status_code == 201


async def test_registration_options_expire(client: httpx.AsyncClient, clock: FakeClock) -> None:
    _, tokens = await registered_login(client)
    options = await creation_options(client, tokens["access_token"])
    attestation = SoftAuthenticator(origin=ORIGIN).create(options)
    # Authentication kept recent, so the options' age alone decides.
    clock.advance(200)
    token = await reauthenticate(client, tokens["access_token"])
    clock.advance(101)
    r = await post_registration(client, token, attestation)
    assert problem(r) == (400, "webauthn_not_pending")
    await register_key(client, token, SoftAuthenticator(origin=ORIGIN))


async def test_a_passkey_must_verify_the_user(client: httpx.AsyncClient) -> None:
    # A passkey logs in alone (amr [hwk|swk, mfa]): without UV it would be one factor.
    _, tokens = await registered_login(client)
    token = tokens["access_token"]
    options = await creation_options(client, token, passkey=True)
    attestation = SoftAuthenticator(origin=ORIGIN).create(options, uv=False)
    r = await post_registration(client, token, attestation)
    assert problem(r) == (401, "invalid_webauthn_response")
    assert await credential_ids(client, token) == []

    # The same holds when it is used: a registered passkey without UV does not log in.
    key = SoftAuthenticator(origin=ORIGIN)
    await register_key(client, token, key, passkey=True)
    r = await passkey_login(client, key.get(await passkey_options(client), uv=False))
    assert problem(r) == (401, "invalid_credentials")
    r = await passkey_login(client, key.get(await passkey_options(client)))
    assert r.status_code == 200, r.text


async def test_a_credential_id_registered_to_another_user_is_refused(
    client: httpx.AsyncClient,
) -> None:
    victim = await key_user(client)
    victims_id = victim.authenticator.credentials[0].credential_id  # public: allowCredentials
    _, tokens = await registered_login(client)
    options = await creation_options(client, tokens["access_token"])
    attestation = claiming_credential_id(
        SoftAuthenticator(origin=ORIGIN).create(options), victims_id
    )
    r = await post_registration(client, tokens["access_token"], attestation)
    assert problem(r) == (409, "webauthn_credential_exists")
    assert await credential_ids(client, tokens["access_token"]) == []
    await key_login(client, victim)  # the victim's key is still theirs alone
