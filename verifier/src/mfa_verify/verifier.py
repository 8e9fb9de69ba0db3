"""Verify mfa-service access tokens offline, and decide whether they are strong enough."""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType, TracebackType
from typing import Any

import httpx
import jwt

from mfa_verify.claims import AccessClaims
from mfa_verify.errors import InsufficientAuthentication, InvalidToken
from mfa_verify.jwks import JWKSCache, VerificationKey

# Asymmetric only: `none` and the HMAC family (whose "key" would be the public key) never.
SUPPORTED_ALGORITHMS = frozenset({"ES256", "EdDSA", "RS256"})
# RFC 9068 section 4: a token of another kind (an ID token, say) is never taken as access.
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
# amr of a login that skipped the challenge on a remembered device (mfa-service SPEC §8).
DEVICE = "device"
REQUIRED_CLAIMS = ["iss", "aud", "sub", "iat", "nbf", "exp", "jti", "auth_time", "amr", "sid"]
# Far more than any access token of ours; parsing a megabyte of base64 is work for nothing.
MAX_TOKEN_LENGTH = 8192

_DECODE_OPTIONS: Any = {
    "require": REQUIRED_CLAIMS,
    # Times are checked below against the injected clock, so tests (and benchmarks) move time.
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
}


class Verifier:
    """Verifies access tokens of one issuer for one audience, with that issuer's JWKS cached.

    Create one at startup (e.g. in a FastAPI lifespan) and share it: it holds the key cache.
    `http` is the client used for the JWKS (pass one with an `ASGITransport` to reach an
    in-process issuer); without it the verifier makes its own and closes it in `aclose()`.
    `time` returns seconds since the epoch; tests pass a fake clock's.

    Keys come from `jwks_url`, else from the discovery document's `jwks_uri` when
    `discovery=True` (checked to name this issuer), else from `<issuer>/.well-known/jwks.json`.
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        jwks_url: str | None = None,
        discovery: bool = False,
        http: httpx.AsyncClient | None = None,
        time: Callable[[], float] = _time.time,
        leeway: float = 30.0,
        algorithms: Iterable[str] = SUPPORTED_ALGORITHMS,
        cache_default: float = 300.0,
        cache_min: float = 30.0,
        cache_max: float = 3600.0,
        refetch_interval: float = 10.0,
        fetch_timeout: float = 5.0,
    ) -> None:
        allowed = frozenset(algorithms)
        if not allowed or not allowed <= SUPPORTED_ALGORITHMS:
            raise ValueError(
                f"algorithms must be a non-empty subset of {sorted(SUPPORTED_ALGORITHMS)}"
            )
        if not issuer or not audience:
            raise ValueError("issuer and audience are required")
        # mfa-service strips a trailing slash from MFA_ISSUER; `iss` is compared exactly.
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.leeway = leeway
        self.time = time
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(follow_redirects=False)
        if jwks_url is None and not discovery:
            jwks_url = f"{self.issuer}/.well-known/jwks.json"
        self.jwks = JWKSCache(
            http=self._http,
            time=time,
            algorithms=allowed,
            jwks_url=jwks_url,
            discovery_url=f"{self.issuer}/.well-known/openid-configuration" if discovery else None,
            issuer=self.issuer,
            default_ttl=cache_default,
            min_ttl=cache_min,
            max_ttl=cache_max,
            refetch_interval=refetch_interval,
            timeout=fetch_timeout,
        )

    async def verify(self, token: str) -> AccessClaims:
        """The token's claims, or InvalidToken; JWKSUnavailable when the keys are needed and
        cannot be fetched. With the key cached this does no I/O."""
        header = _header(token)
        kid = header["kid"]
        key = self.jwks.cached(kid) or await self.jwks.get(kid)
        if key is None:
            raise InvalidToken("unknown key id")
        return self._decode(token, key)

    def require(
        self,
        claims: AccessClaims,
        *,
        max_age: int | None = None,
        methods: Iterable[str] | None = None,
    ) -> None:
        """Raise InsufficientAuthentication unless a second factor was proven (`mfa` in amr),
        one of `methods` is in amr (None: any factor), and at most `max_age` seconds ago
        (None: any time). No leeway here: the freshness is the service's own rule. A login on
        a remembered device (amr `device`) proved no factor: it meets only `methods=None,
        max_age=None`."""
        wanted = None if methods is None else frozenset(methods)

        def refuse(reason: str) -> InsufficientAuthentication:
            return InsufficientAuthentication(reason, max_age=max_age, methods=wanted)

        if "mfa" not in claims.amr:
            raise refuse("a second factor is required")
        # `device`: the login skipped the challenge on a remembered device. The session is
        # multi-factor (`mfa`), but no factor was proven at `auth_time`, and `device` is no
        # method: a demand for one (otp, hwk, …) or for a recent factor is not met.
        remembered = DEVICE in claims.amr
        if wanted is not None and not (wanted - {DEVICE}) & claims.amr:
            raise refuse("another authentication method is required")
        if max_age is not None and (remembered or claims.age(self.time()) > max_age):
            raise refuse("a more recent authentication is required")

    async def verify_mfa(
        self, token: str, *, max_age: int | None = None, methods: Iterable[str] | None = None
    ) -> AccessClaims:
        claims = await self.verify(token)
        self.require(claims, max_age=max_age, methods=methods)
        return claims

    def _decode(self, token: str, key: VerificationKey) -> AccessClaims:
        try:
            payload = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options=_DECODE_OPTIONS,
            )
        except jwt.InvalidAudienceError:
            raise InvalidToken("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("wrong issuer") from None
        except jwt.MissingRequiredClaimError:
            raise InvalidToken("a required claim is missing") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("bad signature") from None
        except jwt.InvalidAlgorithmError:
            raise InvalidToken("algorithm does not match the key") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise InvalidToken("malformed token") from None
        now = self.time()
        iat, nbf, exp, auth_time = (
            _numeric(payload, name) for name in ("iat", "nbf", "exp", "auth_time")
        )
        if now >= exp + self.leeway:
            raise InvalidToken("expired")
        if nbf > now + self.leeway or iat > now + self.leeway or auth_time > now + self.leeway:
            raise InvalidToken("issued in the future")
        amr = payload["amr"]
        if not isinstance(amr, list) or not all(isinstance(m, str) for m in amr):
            raise InvalidToken("malformed amr")
        return AccessClaims(
            sub=_string(payload, "sub"),
            sid=_string(payload, "sid"),
            jti=_string(payload, "jti"),
            iat=iat,
            nbf=nbf,
            exp=exp,
            auth_time=auth_time,
            amr=frozenset(amr),
            raw=MappingProxyType(payload),
        )

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> Verifier:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _header(token: str) -> dict[str, Any]:
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("malformed token")
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.PyJWTError, ValueError, TypeError):
        raise InvalidToken("malformed token") from None
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
        raise InvalidToken("not an access token")
    # Refused before any key lookup, so `none` or HS256 tokens never cause a JWKS refetch.
    if header.get("alg") not in SUPPORTED_ALGORITHMS:
        raise InvalidToken("algorithm not allowed")
    if not isinstance(header.get("kid"), str) or not header["kid"]:
        raise InvalidToken("no key id")
    return header


def _numeric(payload: Mapping[str, Any], name: str) -> int:
    value = payload[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidToken(f"malformed {name}")
    return int(value)


def _string(payload: Mapping[str, Any], name: str) -> str:
    value = payload[name]
    if not isinstance(value, str) or not value:
        raise InvalidToken(f"malformed {name}")
    return value
