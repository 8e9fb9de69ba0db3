"""The issuer's public keys: fetched once, kept as long as its Cache-Control allows.

A token naming a `kid` the cache does not hold makes one refetch (keys rotate), but at most
one per `refetch_interval`: a storm of forged tokens with made-up kids cannot turn this
service into an amplifier against the issuer. Concurrent callers share one fetch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt

from mfa_verify.errors import JWKSUnavailable

logger = logging.getLogger("mfa_verify")

# How long a failed fetch is remembered: during an outage requests fail fast instead of
# queueing behind one connection attempt after another.
ERROR_BACKOFF_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class VerificationKey:
    kid: str
    algorithm: str  # pinned from the JWK's `alg`: the token's header does not choose it
    key: Any  # a `cryptography` public key


def cache_seconds(
    cache_control: str | None, *, default: float, floor: float, ceiling: float
) -> float:
    """How long to keep a JWKS: `max-age` clamped to [floor, ceiling]; `default` when it is
    missing or unusable, and for `no-store`/`no-cache` (a verifier that refetched the keys
    for every token would fail with the issuer; a new `kid` is refetched anyway)."""
    max_age: int | None = None
    for part in (cache_control or "").split(","):
        name, _, value = part.strip().partition("=")
        name = name.strip().lower()
        if name in ("no-store", "no-cache"):
            return default
        if name == "max-age":
            value = value.strip().strip('"')
            if value.isdigit():  # ASCII digits only, never a sign
                max_age = int(value)
    if max_age is None:
        return default
    return min(max(float(max_age), floor), ceiling)


def parse_jwks(document: Any, algorithms: Collection[str]) -> dict[str, VerificationKey]:
    """The usable signature keys of a JWKS; a key we cannot use is skipped, not fatal."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JWKSUnavailable("the key set is not a JWKS document")
    keys: dict[str, VerificationKey] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict):
            continue
        kid, alg = jwk.get("kid"), jwk.get("alg")
        # A key without `alg` would let the token's header pick the algorithm: refuse it.
        if not isinstance(kid, str) or not kid or not isinstance(alg, str) or alg not in algorithms:
            continue
        if jwk.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(jwk, algorithm=alg).key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue
        keys[kid] = VerificationKey(kid, alg, key)
    return keys


class JWKSCache:
    """One issuer's keys. `get()` answers from memory while the cache is fresh."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        time: Callable[[], float],
        algorithms: Collection[str],
        jwks_url: str | None,
        discovery_url: str | None,
        issuer: str,
        default_ttl: float,
        min_ttl: float,
        max_ttl: float,
        refetch_interval: float,
        timeout: float,
    ) -> None:
        if jwks_url is None and discovery_url is None:
            raise ValueError("jwks_url or discovery_url is required")
        # Keys fetched over plain http could be anyone's: an https issuer's keys come over
        # https (a key set is only as trustworthy as the channel it came by).
        self._https_only = _is_https(issuer)
        if self._https_only and jwks_url is not None and not _is_https(jwks_url):
            raise ValueError(f"the issuer is https, so jwks_url must be https too: {jwks_url}")
        self._http = http
        self._time = time
        self._algorithms = frozenset(algorithms)
        self._url = jwks_url
        self._discovery_url = discovery_url
        self._issuer = issuer
        self._default_ttl = default_ttl
        self._min_ttl = min_ttl
        self._max_ttl = max_ttl
        self._refetch_interval = refetch_interval
        self._timeout = timeout
        self._keys: dict[str, VerificationKey] = {}
        self._expires_at = float("-inf")
        self._last_attempt: float | None = None
        self._failed = False
        # Bumped by every fetch, success or failure: a caller that waited for the lock while
        # another fetched takes that outcome instead of fetching again.
        self._generation = 0
        self._lock = asyncio.Lock()
        self.fetches = 0  # attempts, for metrics and tests

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def cached(self, kid: str) -> VerificationKey | None:
        """The key, without I/O, when the cache is fresh and holds it."""
        if self._time() < self._expires_at:
            return self._keys.get(kid)
        return None

    async def get(self, kid: str) -> VerificationKey | None:
        """The key for `kid`, fetching the key set when it is stale, or when `kid` is unknown
        and the last fetch is older than the refetch interval. None: no such key."""
        now = self._time()
        fresh = now < self._expires_at
        if fresh:
            key = self._keys.get(kid)
            if key is not None:
                return key
        # With a fetch in flight, wait for it: it may bring this kid (a rotation's first
        # tokens arrive together). Otherwise ask the issuer only if the last attempt is old
        # enough: refetch interval for an unknown kid, error backoff after a failure.
        if not self._lock.locked() and (
            (fresh and self._recent(now, self._refetch_interval))
            or (not fresh and self._failed and self._recent(now, ERROR_BACKOFF_SECONDS))
        ):
            if self._failed:
                raise JWKSUnavailable("the issuer's key set could not be fetched")
            return None  # refetched moments ago: a forged token or another issuer's
        await self.refresh()
        return self._keys.get(kid)

    async def refresh(self) -> None:
        """Fetch the key set now, or wait for the fetch already in flight and share it."""
        seen = self._generation
        async with self._lock:
            if self._generation != seen:
                if self._failed:
                    raise JWKSUnavailable("the issuer's key set could not be fetched")
                return
            self._last_attempt = self._time()
            self.fetches += 1
            try:
                keys, ttl = await self._fetch()
            except JWKSUnavailable as exc:
                self._failed = True
                self._generation += 1
                logger.warning("JWKS fetch failed: %s", exc.reason)
                raise
            self._keys = keys
            self._expires_at = self._time() + ttl
            self._failed = False
            self._generation += 1

    def _recent(self, now: float, seconds: float) -> bool:
        return self._last_attempt is not None and now - self._last_attempt < seconds

    async def _fetch(self) -> tuple[dict[str, VerificationKey], float]:
        url = self._url or await self._discover()
        response = await self._get(url)
        try:
            document = response.json()
        except ValueError:
            raise JWKSUnavailable("the key set is not JSON") from None
        keys = parse_jwks(document, self._algorithms)
        ttl = cache_seconds(
            response.headers.get("cache-control"),
            default=self._default_ttl,
            floor=self._min_ttl,
            ceiling=self._max_ttl,
        )
        return keys, ttl

    async def _discover(self) -> str:
        assert self._discovery_url is not None
        response = await self._get(self._discovery_url)
        try:
            document = response.json()
        except ValueError:
            raise JWKSUnavailable("the discovery document is not JSON") from None
        if not isinstance(document, dict) or document.get("issuer") != self._issuer:
            # Keys published under another issuer's name are not this issuer's keys.
            raise JWKSUnavailable("the discovery document names another issuer")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            raise JWKSUnavailable("the discovery document has no usable jwks_uri")
        if self._https_only and not _is_https(jwks_uri):
            raise JWKSUnavailable("the discovery document's jwks_uri is not https")
        self._url = jwks_uri
        return jwks_uri

    async def _get(self, url: str) -> httpx.Response:
        try:
            response = await self._http.get(
                url, timeout=self._timeout, headers={"Accept": "application/json"}
            )
        except httpx.HTTPError as exc:
            raise JWKSUnavailable(f"the issuer is unreachable ({type(exc).__name__})") from exc
        if response.status_code != 200:
            raise JWKSUnavailable(f"the issuer answered HTTP {response.status_code}")
        if self._https_only and response.url.scheme != "https":
            # An http client given to us may follow redirects: from https to plain http, no.
            raise JWKSUnavailable("the issuer's documents came over plain http")
        return response


def _is_https(url: str) -> bool:
    return urlsplit(url).scheme.lower() == "https"
