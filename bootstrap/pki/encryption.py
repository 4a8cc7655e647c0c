"""Encryption of Secrets at rest: the key in the state dir and the EncryptionConfiguration."""

from __future__ import annotations

import base64
import binascii
import secrets
from pathlib import Path
from typing import Any

from bootstrap.errors import StateError
from bootstrap.local import yamltext

KEY_BYTES = 32  # aescbc with AES-256
KEY_NAME = "key1"


def new_key() -> str:
    """32 random bytes, base64 (the form EncryptionConfiguration wants)."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def encode_key_file(key: str) -> bytes:
    return (key + "\n").encode("ascii")


def parse_key_file(data: bytes, path: Path) -> str:
    hint = (
        f"restore {path} from a backup: Secrets already written with it cannot be read "
        "without it. Only for a cluster that never stored Secrets: delete it to generate a new key"
    )
    try:
        text = data.decode("ascii").strip()
        raw = base64.b64decode(text, validate=True)
    except (UnicodeDecodeError, binascii.Error) as exc:
        raise StateError(f"{path} is not a base64 encryption key ({exc})", hint=hint) from exc
    if len(raw) != KEY_BYTES:
        raise StateError(f"{path} holds {len(raw)} bytes, expected {KEY_BYTES}", hint=hint)
    return text


def encryption_config(key: str) -> bytes:
    """EncryptionConfiguration: Secrets written with aescbc key1; identity last so Secrets
    stored before encryption was turned on stay readable."""
    document: dict[str, Any] = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [
            {
                "resources": ["secrets"],
                "providers": [
                    {"aescbc": {"keys": [{"name": KEY_NAME, "secret": key}]}},
                    {"identity": {}},
                ],
            }
        ],
    }
    return yamltext.dump(document, sort_keys=False, default_flow_style=False).encode("utf-8")
