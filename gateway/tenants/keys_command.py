"""`trtllm-gateway keys new --tenant NAME ...`: a new API key, printed once, and its keys-file entry to paste."""

from __future__ import annotations

import argparse
import secrets
from datetime import UTC, datetime
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.errors import ConfigurationError
from gateway.models_file import describe
from gateway.tenants.keys import key_digest
from gateway.tenants.keys_file import KeysFile
from gateway.tenants.priority import PRIORITY_CLASSES

KEY_PREFIX = "sk-"
LIMIT_FLAGS = ("requests_per_minute", "tokens_per_minute", "concurrent_requests", "tokens_per_day", "tokens_per_month")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `keys new` flags."""
    parser.add_argument("--tenant", required=True, help="the team or application the key belongs to")
    parser.add_argument("--id", help="the key's id in the usage API (default: key_ + 12 hex digits of its SHA-256)")
    parser.add_argument("--models", default="*", help="comma-separated model names, aliases or adapters (default *)")
    for name in LIMIT_FLAGS:
        parser.add_argument("--" + name.replace("_", "-"), type=int, help="limit (default: none)")
    parser.add_argument("--priority", choices=PRIORITY_CLASSES, default="normal", help="queue class (default normal)")
    parser.add_argument("--role", choices=["user", "admin"], default="user", help="admin keys may read usage")
    parser.add_argument("--expires", help="expiry, ISO 8601 (2027-01-01 or 2027-01-01T00:00:00Z; UTC without a zone)")


def new_entry(args: argparse.Namespace, key: str) -> dict[str, Any]:
    """The keys-file entry for `key` with the flags' settings (checked as the gateway will read it)."""
    entry: dict[str, Any] = {"tenant": args.tenant, "sha256": key_digest(key.encode()).hex()}
    if args.id:
        entry["id"] = args.id
    entry["models"] = [name.strip() for name in args.models.split(",") if name.strip()]
    limits = {name: getattr(args, name) for name in LIMIT_FLAGS if getattr(args, name) is not None}
    if limits:
        entry["limits"] = limits
    if args.priority != "normal":
        entry["priority"] = args.priority
    if args.role != "user":
        entry["role"] = args.role
    if args.expires:
        try:
            expires = datetime.fromisoformat(args.expires.replace("Z", "+00:00"))
            entry["expires"] = (expires if expires.tzinfo else expires.replace(tzinfo=UTC)).isoformat()
        except ValueError as exc:
            raise ConfigurationError(f"--expires: not an ISO 8601 date or time: {exc}") from None
    try:
        KeysFile.model_validate({"keys": [entry]})
    except ValidationError as exc:
        raise ConfigurationError(describe(exc, {"keys": [entry]}, entries="keys", label="tenant")) from None
    return entry


def run_keys_new(args: argparse.Namespace) -> int:
    """Print a new key once, and the entry that grants it."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    entry = new_entry(args, key)
    print(f"API key for tenant '{args.tenant}' (shown once: the keys file keeps only its SHA-256):\n\n  {key}\n")
    print("Add this entry to the `keys:` list of the keys file (the gateway reloads it by itself):\n")
    print(yaml.safe_dump([entry], sort_keys=False, default_flow_style=None), end="")
    return 0
