"""Aggregate key validation, the same for every store."""

from __future__ import annotations

import re
from typing import Any

from kvsourcing.errors import InvalidKeyError

MAX_KEY_BYTES = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def validate_key(key: Any) -> str:
    """Return ``key`` if it can name an aggregate on every backend, else raise ``InvalidKeyError``."""
    if not isinstance(key, str):
        raise InvalidKeyError(f"aggregate key must be a str, not {type(key).__name__}: {key!r}")
    if not key:
        raise InvalidKeyError("aggregate key must not be empty")
    bad = _CONTROL.search(key)
    if bad:
        raise InvalidKeyError(
            f"aggregate key {key!r} holds control character {bad.group()!r} at {bad.start()}: "
            "use printable characters only"
        )
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidKeyError(f"aggregate key {key!r} is not valid unicode text: {exc.reason}") from exc
    if size > MAX_KEY_BYTES:
        raise InvalidKeyError(f"aggregate key is {size} bytes in UTF-8; the limit is {MAX_KEY_BYTES}")
    return key
