"""The keys file (`--keys-file`, YAML): per key its tenant, SHA-256, models, limits, priority, role and expiry.

    keys:
      - tenant: team-a
        sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
        id: team-a-ci            # shown in the usage API (default: key_ + 12 hex digits of the SHA-256)
        models: [llama-3-8b, llama-3-8b-sql]   # names, aliases, LoRA adapter names; "*" for every model
        limits: {requests_per_minute: 600, tokens_per_minute: 200000, concurrent_requests: 32,
                 tokens_per_day: 5000000, tokens_per_month: 100000000}
        priority: high           # low, normal (default), high
        role: admin              # user (default) or admin (may read usage)
        expires: 2027-01-01T00:00:00Z

Every problem is a ConfigurationError naming the entry (index and tenant) and the field, like the models file's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.errors import ConfigurationError
from gateway.models_file import Name, describe
from gateway.tenants.keys import ApiKey, default_key_id, tenant_owner
from gateway.tenants.limits import Limits
from gateway.tenants.priority import PRIORITY_CLASSES, priority_rank

EVERY_MODEL = "*"
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
Count = Annotated[int, Field(ge=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitsEntry(_Strict):
    """A key's limits (absent: unlimited)."""

    requests_per_minute: Count | None = None
    tokens_per_minute: Count | None = None  # prompt + completion
    concurrent_requests: Count | None = None
    tokens_per_day: Count | None = None  # UTC days
    tokens_per_month: Count | None = None  # UTC calendar months


class KeyEntry(_Strict):
    """One key."""

    tenant: Name
    sha256: str
    id: Name | None = None
    models: Annotated[list[Name], Field(min_length=1)]
    limits: LimitsEntry = LimitsEntry()
    priority: Literal[PRIORITY_CLASSES] = "normal"  # type: ignore[valid-type]
    role: Literal["user", "admin"] = "user"
    expires: datetime | None = None

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        if not _SHA256.match(value):
            raise ValueError("must be the key's SHA-256 as 64 hex digits (never the key itself)")
        return value.lower()


class KeysFile(_Strict):
    """The whole file."""

    keys: list[KeyEntry]

    @model_validator(mode="after")
    def _unique(self) -> KeysFile:
        digests: dict[str, int] = {}
        ids: dict[str, int] = {}
        for index, entry in enumerate(self.keys):
            where = f"keys[{index}] ('{entry.tenant}')"
            if entry.sha256 in digests:
                raise ValueError(f"{where}, field 'sha256': the same key as keys[{digests[entry.sha256]}]")
            key_id = key_id_of(entry)
            if key_id in ids:
                raise ValueError(f"{where}, field 'id': '{key_id}' is also the id of keys[{ids[key_id]}]")
            digests[entry.sha256], ids[key_id] = index, index
        return self


def key_id_of(entry: KeyEntry) -> str:
    """The entry's id, or the one made from its digest."""
    return entry.id or default_key_id(bytes.fromhex(entry.sha256))


def load_keys_file(path: Path, names: Mapping[str, str]) -> dict[bytes, ApiKey]:
    """The keys of a keys file by digest; `names` maps every served name (aliases, adapters) to its model's."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigurationError(f"keys file {path}: cannot read it: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"keys file {path}: not valid YAML: {exc}") from exc
    try:
        parsed = KeysFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(f"keys file {path}: {describe(exc, data, entries='keys', label='tenant')}") from exc
    keys = {}
    for index, entry in enumerate(parsed.keys):
        try:
            keys[bytes.fromhex(entry.sha256)] = api_key(entry, names)
        except ValueError as exc:
            raise ConfigurationError(f"keys file {path}: keys[{index}] ('{entry.tenant}'), {exc}") from exc
    return keys


def api_key(entry: KeyEntry, names: Mapping[str, str]) -> ApiKey:
    """The ApiKey of an entry; ValueError naming the field for a model that is not served."""
    models: frozenset[str] | None = None
    if EVERY_MODEL not in entry.models:
        unknown = [(i, name) for i, name in enumerate(entry.models) if name not in names]
        if unknown:
            index, name = unknown[0]
            raise ValueError(f"field 'models.{index}': '{name}' is not a served model (nor an alias or adapter)")
        models = frozenset(names[name] for name in entry.models)
    expires = entry.expires
    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)  # a time without a zone is UTC
    return ApiKey(
        key_id=key_id_of(entry),
        tenant=entry.tenant,
        models=models,
        limits=Limits(**entry.limits.model_dump()),
        priority=priority_rank(entry.priority),
        admin=entry.role == "admin",
        expires_at=expires.timestamp() if expires is not None else None,
        owner=tenant_owner(entry.tenant),
    )
