"""A software WebAuthn authenticator and client, for the test suite.

It plays both the browser (``navigator.credentials.create()`` / ``.get()``, serialised the way
``PublicKeyCredential.toJSON()`` does) and the authenticator behind it: ES256 (P-256, COSE alg
-7) key pairs, ``none`` attestation, UP/UV/BE/BS/AT flags and signature counters. Inputs are the
options JSON dicts the server sends (``PublicKeyCredentialCreationOptionsJSON`` /
``PublicKeyCredentialRequestOptionsJSON``); outputs are ``RegistrationResponseJSON`` /
``AuthenticationResponseJSON`` dicts, every binary field base64url without padding.

The keyword overrides (``origin=``, ``rp_id=``, ``uv=``, ``sign_count=``, ``challenge=``,
``credential=``) exist for attack tests: each produces a response that is correctly signed but
wrong in exactly one way, so the server's check for that one thing is what must reject it.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

FLAG_UP = 0x01
FLAG_UV = 0x04
FLAG_BE = 0x08
FLAG_BS = 0x10
FLAG_AT = 0x40

COSE_ALG_ES256 = -7


class WebAuthnClientError(Exception):
    """What the browser would reject the call with; ``name`` is the DOMException name."""

    name = "Error"


class InvalidStateError(WebAuthnClientError):
    """``create()``: the authenticator already holds a credential in ``excludeCredentials``."""

    name = "InvalidStateError"


class NotAllowedError(WebAuthnClientError):
    """``get()``: no held credential matches the request."""

    name = "NotAllowedError"


class NotSupportedError(WebAuthnClientError):
    """``create()``: ``pubKeyCredParams`` offers no algorithm this authenticator has (ES256)."""

    name = "NotSupportedError"


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SoftCredential:
    """One key pair the authenticator holds."""

    credential_id: bytes
    private_key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes | None
    sign_count: int
    discoverable: bool
    backup_eligible: bool
    backed_up: bool

    @property
    def id_b64(self) -> str:
        """The credential id as it appears in JSON (``id``, ``allowCredentials[].id``)."""
        return b64url_encode(self.credential_id)

    @property
    def public_key_cose(self) -> bytes:
        """The COSE_Key (EC2, ES256), as in attestedCredentialData and as a server stores it."""
        return cose_key(self.private_key.public_key())

    @property
    def public_key_spki(self) -> bytes:
        """The public key as DER SubjectPublicKeyInfo (what ``getPublicKey()`` returns)."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def cose_key(public_key: ec.EllipticCurvePublicKey) -> bytes:
    numbers = public_key.public_numbers()
    return cbor2.dumps(
        {
            1: 2,  # kty: EC2
            3: COSE_ALG_ES256,  # alg: ES256
            -1: 1,  # crv: P-256
            -2: numbers.x.to_bytes(32, "big"),
            -3: numbers.y.to_bytes(32, "big"),
        }
    )


def client_data_json(type_: str, challenge: str, origin: str) -> bytes:
    """The clientDataJSON bytes, compact, in the order browsers write the members."""
    data = {"type": type_, "challenge": challenge, "origin": origin, "crossOrigin": False}
    return json.dumps(data, separators=(",", ":")).encode()


def decode_client_data(response: dict[str, Any]) -> dict[str, Any]:
    """The parsed clientDataJSON of a registration or authentication response."""
    parsed: dict[str, Any] = json.loads(b64url_decode(response["response"]["clientDataJSON"]))
    return parsed


def tamper_signature(response: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of an authentication response with one byte of its signature flipped."""
    tampered = copy.deepcopy(response)
    signature = bytearray(b64url_decode(tampered["response"]["signature"]))
    signature[len(signature) // 2] ^= 0x01
    tampered["response"]["signature"] = b64url_encode(bytes(signature))
    return tampered


def _rp_id_from_origin(origin: str) -> str:
    return urlsplit(origin).hostname or ""


class SoftAuthenticator:
    """A browser plus one authenticator (a security key or a platform passkey provider).

    ``uv``: whether it performs user verification. ``backup_eligible`` / ``backed_up``: the
    BE/BS flags of the credentials it creates (``backup_eligible=True, backed_up=True`` and
    ``counter_step=0`` is a synced passkey). ``counter_step``: how much ``get()`` adds to a
    credential's signature counter (0: the counter stays 0). ``initial_sign_count``: the
    counter in the registration's authenticatorData.
    """

    def __init__(
        self,
        *,
        origin: str,
        uv: bool = True,
        backup_eligible: bool = False,
        backed_up: bool = False,
        counter_step: int = 1,
        initial_sign_count: int = 0,
        aaguid: bytes = bytes(16),
        attachment: str = "cross-platform",
        transports: Sequence[str] = ("usb",),
    ) -> None:
        if len(aaguid) != 16:
            raise ValueError("aaguid must be 16 bytes")
        self.origin = origin
        self.uv = uv
        self.backup_eligible = backup_eligible
        self.backed_up = backed_up
        self.counter_step = counter_step
        self.initial_sign_count = initial_sign_count if counter_step else 0
        self.aaguid = aaguid
        self.attachment = attachment
        self.transports = list(transports)
        self.credentials: list[SoftCredential] = []

    def find(self, credential_id: bytes | str) -> SoftCredential | None:
        """The held credential with this id (raw bytes or base64url), if any."""
        if isinstance(credential_id, str):
            credential_id = b64url_decode(credential_id)
        for credential in self.credentials:
            if credential.credential_id == credential_id:
                return credential
        return None

    def _flags(self, *, up: bool, uv: bool, credential: SoftCredential, at: bool) -> int:
        flags = FLAG_UP if up else 0
        if uv:
            flags |= FLAG_UV
        if credential.backup_eligible:
            flags |= FLAG_BE
        if credential.backed_up:
            flags |= FLAG_BS
        if at:
            flags |= FLAG_AT
        return flags

    def create(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        uv: bool | None = None,
        discoverable: bool | None = None,
        challenge: str | None = None,
        up: bool = True,
    ) -> dict[str, Any]:
        """``navigator.credentials.create({publicKey: options})``, as ``toJSON()``.

        ``rp_id`` (default ``options["rp"]["id"]``, else the origin's host) is what is hashed
        into the rpIdHash and what the new credential is scoped to; ``origin`` goes into
        clientDataJSON. The new credential is appended to ``self.credentials``.
        """
        for descriptor in options.get("excludeCredentials") or []:
            if self.find(descriptor["id"]) is not None:
                raise InvalidStateError("the authenticator already holds an excluded credential")
        params = options.get("pubKeyCredParams")
        if params and not any(
            p.get("type") == "public-key" and p.get("alg") == COSE_ALG_ES256 for p in params
        ):
            raise NotSupportedError("pubKeyCredParams offers no ES256")

        origin = origin if origin is not None else self.origin
        if rp_id is None:
            rp_id = (options.get("rp") or {}).get("id") or _rp_id_from_origin(origin)
        uv = self.uv if uv is None else uv
        if discoverable is None:
            selection = options.get("authenticatorSelection") or {}
            discoverable = selection.get("residentKey") == "required" or (
                "residentKey" not in selection and selection.get("requireResidentKey") is True
            )
        user_id = (options.get("user") or {}).get("id")

        credential = SoftCredential(
            credential_id=os.urandom(32),
            private_key=ec.generate_private_key(ec.SECP256R1()),
            rp_id=rp_id,
            user_handle=b64url_decode(user_id) if user_id is not None else None,
            sign_count=self.initial_sign_count,
            discoverable=discoverable,
            backup_eligible=self.backup_eligible,
            backed_up=self.backed_up,
        )
        attested = (
            self.aaguid
            + struct.pack(">H", len(credential.credential_id))
            + credential.credential_id
            + credential.public_key_cose
        )
        flags = self._flags(up=up, uv=uv, credential=credential, at=True)
        authenticator_data = (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([flags])
            + struct.pack(">I", credential.sign_count)
            + attested
        )
        attestation_object = cbor2.dumps(
            {"fmt": "none", "attStmt": {}, "authData": authenticator_data}
        )
        client_data = client_data_json(
            "webauthn.create", challenge if challenge is not None else options["challenge"], origin
        )
        self.credentials.append(credential)
        return {
            "id": credential.id_b64,
            "rawId": credential.id_b64,
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url_encode(client_data),
                "attestationObject": b64url_encode(attestation_object),
                "transports": list(self.transports),
            },
            "authenticatorAttachment": self.attachment,
            "clientExtensionResults": {},
        }

    def _pick(self, options: dict[str, Any], origin: str) -> SoftCredential:
        allowed = options.get("allowCredentials") or []
        if allowed:
            for descriptor in allowed:
                found = self.find(descriptor["id"])
                if found is not None:
                    return found
            raise NotAllowedError("no held credential is in allowCredentials")
        scope = options.get("rpId") or _rp_id_from_origin(origin)
        for credential in self.credentials:
            if credential.discoverable and credential.rp_id == scope:
                return credential
        raise NotAllowedError(f"no discoverable credential for {scope!r}")

    def get(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        uv: bool | None = None,
        credential: SoftCredential | None = None,
        sign_count: int | None = None,
        challenge: str | None = None,
        up: bool = True,
    ) -> dict[str, Any]:
        """``navigator.credentials.get({publicKey: options})``, as ``toJSON()``.

        Uses ``credential`` if given (whatever the options allow), else the first held
        credential in ``allowCredentials``, else (empty list) the first discoverable one for
        ``options["rpId"]``; raises :class:`NotAllowedError` if none. The counter goes up by
        ``counter_step``; ``sign_count=`` sends that value instead and leaves the stored
        counter alone. ``rp_id`` (default: the credential's) is hashed into the rpIdHash.
        """
        origin = origin if origin is not None else self.origin
        if credential is None:
            credential = self._pick(options, origin)
        rp_id = rp_id if rp_id is not None else credential.rp_id
        uv = self.uv if uv is None else uv
        if sign_count is None:
            credential.sign_count += self.counter_step
            sign_count = credential.sign_count

        flags = self._flags(up=up, uv=uv, credential=credential, at=False)
        authenticator_data = (
            hashlib.sha256(rp_id.encode()).digest() + bytes([flags]) + struct.pack(">I", sign_count)
        )
        client_data = client_data_json(
            "webauthn.get", challenge if challenge is not None else options["challenge"], origin
        )
        signature = credential.private_key.sign(
            authenticator_data + hashlib.sha256(client_data).digest(),
            ec.ECDSA(hashes.SHA256()),
        )
        response: dict[str, Any] = {
            "clientDataJSON": b64url_encode(client_data),
            "authenticatorData": b64url_encode(authenticator_data),
            "signature": b64url_encode(signature),
        }
        if credential.discoverable and credential.user_handle is not None:
            response["userHandle"] = b64url_encode(credential.user_handle)
        return {
            "id": credential.id_b64,
            "rawId": credential.id_b64,
            "type": "public-key",
            "response": response,
            "authenticatorAttachment": self.attachment,
            "clientExtensionResults": {},
        }
