"""Aggregate key and commit id validation, the same for every store."""

from __future__ import annotations

import re
from typing import Any

from kvsourcing.errors import InvalidKeyError

MAX_KEY_BYTES = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _check_text(what: str, text: str) -> str | None:
    """What is wrong with ``text`` as a stored name (a control character, invalid unicode,
    more than ``MAX_KEY_BYTES``), or ``None``."""
    if not text:
        return f"{what} must not be empty"
    bad = _CONTROL.search(text)
    if bad:
        return (
            f"{what} {text!r} holds control character {bad.group()!r} at {bad.start()}: "
            "use printable characters only"
        )
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        return f"{what} {text!r} is not valid unicode text: {exc.reason}"
    if size > MAX_KEY_BYTES:
        return f"{what} is {size} bytes in UTF-8; the limit is {MAX_KEY_BYTES}"
    return None


def validate_commit_id(commit_id: Any) -> str:
    """Return ``commit_id`` if every store can keep it, else raise ``ValueError`` (``TypeError``
    for a non-``str``): the same rules as aggregate keys."""
    if not isinstance(commit_id, str):
        raise TypeError(f"commit id must be a str, not {type(commit_id).__name__}: {commit_id!r}")
    problem = _check_text("commit id", commit_id)
    if problem:
        raise ValueError(problem)
    return commit_id


def validate_key(key: Any) -> str:
    """Return ``key`` if it can name an aggregate on every backend, else raise ``InvalidKeyError``."""
    if not isinstance(key, str):
        raise InvalidKeyError(f"aggregate key must be a str, not {type(key).__name__}: {key!r}")
    problem = _check_text("aggregate key", key)
    if problem:
        raise InvalidKeyError(problem)
    return key
