"""The API keys in force: each key's tenant, models, limits, priority and role, found by the key's SHA-256.

The keys file stores digests, never keys; a presented key is hashed once and looked up. A lookup by digest
leaks nothing about the stored keys through its timing: finding where a digest would be says nothing about a
key's bytes. The ring is replaced whole when the file is reloaded; a request keeps the key it was admitted with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.tenants.limits import Limits
from gateway.tenants.priority import NORMAL

DEFAULT_TENANT = "default"  # the tenant of `--api-keys` keys


def key_digest(key: bytes) -> bytes:
    """The SHA-256 of a key as a client sends it (its UTF-8 bytes)."""
    return hashlib.sha256(key).digest()


def default_key_id(digest: bytes) -> str:
    """A key's id when the file gives none: safe to show (12 hex digits of its SHA-256 say nothing of the key)."""
    return "key_" + digest.hex()[:12]


def key_owner(digest: bytes) -> str:
    """The store owner of an `--api-keys` key (its digest, never the key)."""
    return "key:" + digest.hex()


def tenant_owner(tenant: str) -> str:
    """The store owner of a keys-file tenant."""
    return "tenant:" + tenant


@dataclass(frozen=True, slots=True)
class ApiKey:
    """What one key may do."""

    key_id: str
    tenant: str
    models: frozenset[str] | None = None  # canonical model names; None: every model
    limits: Limits = field(default_factory=Limits)
    priority: int = NORMAL  # rank of its priority class (tenants/priority.py)
    admin: bool = False  # may read usage
    expires_at: float | None = None  # Unix seconds
    # Who owns what its requests store (responses, conversations): the tenant for keys-file keys, so a tenant's
    # keys share their objects; the key's own digest for `--api-keys` keys (each key sees only its own).
    owner: str = ""

    def may_use(self, model: str) -> bool:
        """Whether the key may use the model of this canonical name."""
        return self.models is None or model in self.models

    def expired(self, now: float) -> bool:
        """Whether the key has expired."""
        return self.expires_at is not None and now >= self.expires_at


def legacy_keys(keys: Iterable[str]) -> dict[bytes, ApiKey]:
    """`--api-keys` / `--api-key-file` keys: tenant `default`, every model, no limits."""
    found: dict[bytes, ApiKey] = {}
    for key in keys:
        if key:
            digest = key_digest(key.encode())
            found[digest] = ApiKey(default_key_id(digest), DEFAULT_TENANT, owner=key_owner(digest))
    return found


class KeyRing:
    """The keys in force, by digest; `replace` swaps them all at once (a reload)."""

    def __init__(self, keys: dict[bytes, ApiKey]) -> None:
        self._keys = keys

    def find(self, presented: bytes) -> ApiKey | None:
        """The key a client presented, if it is one of ours."""
        return self._keys.get(key_digest(presented))

    def replace(self, keys: dict[bytes, ApiKey]) -> None:
        """Put a new set of keys in force."""
        self._keys = keys

    def tenants(self) -> set[str]:
        """The tenants of the keys in force."""
        return {key.tenant for key in self._keys.values()}

    def __len__(self) -> int:
        return len(self._keys)
