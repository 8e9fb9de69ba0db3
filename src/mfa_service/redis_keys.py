"""Redis key names. A user's keys share one hash tag, so a Lua script may touch several of
them and Redis Cluster still keeps them on one shard."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class UserKeys:
    prefix: str
    user_id: uuid.UUID

    @property
    def _base(self) -> str:
        return f"{self.prefix}{{u:{self.user_id.hex}}}"

    @property
    def factor(self) -> str:
        """Second-factor throttle: a hash of failures `n`, window end `w`, locked-until `l`."""
        return f"{self._base}:factor"

    @property
    def challenge_generation(self) -> str:
        """Bumped to void every pending challenge of the user at once."""
        return f"{self._base}:challenge:gen"

    def challenge(self, token_hash: str) -> str:
        return f"{self._base}:challenge:{token_hash}"

    def webauthn(self, purpose: str, binding_hash: str) -> str:
        """A WebAuthn challenge waiting for its answer, for one purpose and binding."""
        return f"{self._base}:webauthn:{purpose}:{binding_hash}"


def passkey_key(prefix: str, challenge_hash: str) -> str:
    """A passkey login's WebAuthn challenge: bound to no user, found by the challenge."""
    return f"{prefix}{{passkey:{challenge_hash}}}"


def deny_key(prefix: str, jti: str) -> str:
    return f"{prefix}deny:{jti}"
