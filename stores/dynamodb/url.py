"""``dynamodb://TABLE?...`` store URLs, checked so that a typo fails with what is wrong.

The query may carry ``region`` and ``endpoint_url`` (the client's) and the store options
a URL can spell: ``snapshot_interval``, ``buckets`` (ints), ``feed_grace`` (seconds),
``feed`` (``true``/``false``) and ``compression``. Objects (``codec``, ``cipher``,
``client``) are passed as keyword options; an option given both ways is refused.
``without_userinfo`` and ``CLIENT_SETTINGS`` are how the sync and the async clients are made.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from kvsourcing.config import redact_url
from kvsourcing.errors import ConfigurationError
from kvsourcing.stores.dynamodb.admin import check_table_name
from kvsourcing.stores.keyvalue.base import check_options

EXAMPLE = "dynamodb://my-events?region=eu-west-1&endpoint_url=http://localhost:8000"
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_QUERY: dict[str, Callable[[str], Any]] = {
    "region": str,
    "endpoint_url": str,
    "snapshot_interval": int,
    "buckets": int,
    "feed_grace": float,
    "feed": lambda text: _BOOLEANS[text.lower()],
    "compression": str,
}
CLIENT_SETTINGS: dict[str, Any] = {"retries": {"mode": "standard"}, "connect_timeout": 10}
"""The botocore ``Config`` of the clients the store makes: standard retry mode."""
OWN_OPTIONS = ("client", "region", "endpoint_url", "buckets", "feed_grace")
"""What ``new_store`` takes besides every store's options."""


def parse_url(url: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(table name, options from the query)`` of a store URL, checked with the keyword
    ``options`` it comes with."""
    parts = urlsplit(url)
    shown = redact_url(url)

    def bad(problem: str) -> ConfigurationError:
        return ConfigurationError(f"invalid DynamoDB store URL {shown!r}: {problem}; expected e.g. {EXAMPLE}")

    if parts.scheme != "dynamodb":
        raise ConfigurationError(f"not a DynamoDB store URL: {shown!r}; expected e.g. {EXAMPLE}")
    if not parts.netloc:
        raise bad("it names no table")
    if parts.path not in ("", "/") or parts.fragment:
        raise bad("a path or fragment follows the table name")
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise bad("its query is malformed") from None
    unknown = sorted(set(query) - set(_QUERY))
    if unknown:
        raise bad(f"unknown parameter(s) {', '.join(unknown)} (known: {', '.join(_QUERY)})")
    check_options("DynamoDB", options, OWN_OPTIONS)
    parsed: dict[str, Any] = {}
    for name, values in query.items():
        if len(values) != 1 or not values[0]:
            raise bad(f"parameter {name} must be given once, with a value")
        if name in options:
            raise bad(f"parameter {name} is also given as a keyword option")
        try:
            parsed[name] = _QUERY[name](values[0])
        except (KeyError, ValueError):
            raise bad(f"parameter {name}={values[0]!r} is not of its type") from None
    if options.get("client") is not None and {"region", "endpoint_url"} & set(parsed):
        raise ConfigurationError(
            f"DynamoDB store URL {shown!r} sets the region or endpoint_url, but client= was given "
            "too; configure one or the other"
        )
    return check_table_name(parts.netloc), parsed


def without_userinfo(endpoint_url: str) -> str:
    """``endpoint_url`` without its ``user:password@``, which no request would carry."""
    try:
        parts = urlsplit(endpoint_url)
    except ValueError:
        return endpoint_url  # boto3 refuses it, and the message is redacted
    if "@" not in parts.netloc:
        return endpoint_url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
