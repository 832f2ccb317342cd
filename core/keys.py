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


def _validated(text: Any, what: str, invalid: type[Exception], not_text: type[Exception]) -> str:
    """``text`` if it is a ``str`` every store can keep as a name, else ``not_text`` or ``invalid``."""
    if not isinstance(text, str):
        raise not_text(f"{what} must be a str, not {type(text).__name__}: {text!r}")
    problem = _check_text(what, text)
    if problem:
        raise invalid(problem)
    return text


def validate_commit_id(commit_id: Any) -> str:
    """Return ``commit_id`` if every store can keep it, else raise ``ValueError`` (``TypeError``
    for a non-``str``): the same rules as aggregate keys."""
    text = commit_id
    if isinstance(text, str) and text.isascii() and text.isprintable() and 0 < len(text) <= MAX_KEY_BYTES:
        return text  # the common case, checked on every commit: printable ASCII, a byte a character
    return _validated(commit_id, "commit id", ValueError, TypeError)


def validate_key(key: Any) -> str:
    """Return ``key`` if it can name an aggregate on every backend, else raise ``InvalidKeyError``."""
    if isinstance(key, str) and key.isascii() and key.isprintable() and 0 < len(key) <= MAX_KEY_BYTES:
        return key  # the common case, checked on every commit: printable ASCII, a byte a character
    return _validated(key, "aggregate key", InvalidKeyError, InvalidKeyError)
