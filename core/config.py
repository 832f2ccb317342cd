"""``open_store(url)``: one entry point that picks a store by URL scheme, as ``dbm.open`` does."""

from __future__ import annotations

import importlib
import os
import re
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import unquote

from kvsourcing.errors import ConfigurationError, KvSourcingError

if TYPE_CHECKING:
    from kvsourcing.stores.keyvalue import KeyValueStore
    from kvsourcing.stores.keyvalue.aio import AsyncKeyValueStore

ENVIRONMENT_VARIABLE = "KVSOURCING_STORE"

_SCHEMES: dict[str, tuple[str, str]] = {
    "memory": ("kvsourcing.stores.memory", ""),
    "redis": ("kvsourcing.stores.redis", "redis"),
    "rediss": ("kvsourcing.stores.redis", "redis"),
    "redis+cluster": ("kvsourcing.stores.redis", "redis"),
    "rediss+cluster": ("kvsourcing.stores.redis", "redis"),
    "dynamodb": ("kvsourcing.stores.dynamodb", "dynamodb"),
}


# A query option holding a secret (``password=``, ``ssl_password=``), and its value.
_SECRET_QUERY_VALUE = re.compile(r"[?&][a-z_]*password=([^&#]*)", re.IGNORECASE)
# A query option's value, and in a value that is a URL (``endpoint_url=http://u:pw@host``,
# as is or percent-encoded) the parts that bound its password.
_QUERY_VALUE = re.compile(r"[?&][^=&#]*=([^&#]*)")
_NESTED_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*(?:://|%3A%2F%2F)", re.IGNORECASE)
_NESTED_SLASH = re.compile(r"/|%2F", re.IGNORECASE)
_NESTED_AT = re.compile(r"@|%40", re.IGNORECASE)
_NESTED_COLON = re.compile(r":|%3A", re.IGNORECASE)


def _nested_password(url: str, start: int, end: int) -> tuple[int, int] | None:
    """Where the password is of the URL that ``url[start:end]`` (a query value) holds, if any."""
    scheme = _NESTED_SCHEME.match(url, start, end)
    if scheme is None:
        return None
    slash = _NESTED_SLASH.search(url, scheme.end(), end)
    authority_end = slash.start() if slash else end
    ats = list(_NESTED_AT.finditer(url, scheme.end(), authority_end))
    colon = _NESTED_COLON.search(url, scheme.end(), ats[-1].start()) if ats else None
    return (colon.end(), ats[-1].start()) if colon else None


def userinfo_end(rest: str) -> int:
    """Where the user info of ``rest`` (a URL after its ``://``) ends: its last ``@`` not in
    a query value, or -1. Unlike ``urlsplit``, this finds the user info even when the
    password holds an unencoded ``/``, ``?`` or ``#``."""
    query = rest.find("?")
    at = rest.rfind("@")
    while at >= 0:
        field_start = max(rest.rfind("&", 0, at), rest.rfind("?", 0, at)) + 1
        if query < 0 or at < query or "=" not in rest[field_start:at]:
            return at
        at = rest.rfind("@", 0, at)
    return -1


def _secret_spans(url: str) -> list[tuple[int, int]]:
    """Where ``url`` holds secrets: the password of its user info (``userinfo_end``), the
    values of ``password``/``ssl_password`` query options, and the password of a URL given
    as a query value (``endpoint_url``). Works on malformed URLs too."""
    sep = url.find("://")
    offset = sep + 3 if sep >= 0 else 0
    rest = url[offset:]
    spans = []
    at = userinfo_end(rest)
    colon = rest.find(":", 0, max(at, 0))
    if colon >= 0:
        spans.append((offset + colon + 1, offset + at))
    after = offset + at + 1 if at >= 0 else offset
    spans.extend((m.start(1), m.end(1)) for m in _SECRET_QUERY_VALUE.finditer(url, after))
    for value in _QUERY_VALUE.finditer(url, after):
        nested = _nested_password(url, value.start(1), value.end(1))
        if nested is not None and nested not in spans:
            spans.append(nested)
    return sorted(spans)


def redact_url(url: str) -> str:
    """``url`` as messages may show it: its passwords (of the user info, a
    ``password``/``ssl_password`` query option, a URL in a query value) replaced by ``***``."""
    for start, end in reversed(_secret_spans(url)):
        url = url[:start] + "***" + url[end:]
    return url


def url_secrets(url: str) -> list[str]:
    """The secrets ``url`` holds, as written and percent-decoded, so that messages can be
    scrubbed of them."""
    found = {url[start:end] for start, end in _secret_spans(url)}
    found |= {unquote(secret) for secret in found}
    return sorted((secret for secret in found if secret), key=len, reverse=True)


def drivers() -> dict[str, tuple[str, str]]:
    """The driver packages ``open_store`` knows, by name (``"redis"``), each with the pip
    extra it needs; nothing is imported."""
    return {module.rpartition(".")[2]: (module, extra) for module, extra in _SCHEMES.values()}


def supported_schemes() -> list[str]:
    """The URL schemes ``open_store`` understands."""
    return list(_SCHEMES)


class StoreModule(Protocol):
    """What a driver's module (``kvsourcing.stores.<name>``) offers ``open_store``."""

    def from_url(self, url: str, **options: Any) -> KeyValueStore: ...

    async def open_async(self, url: str, **options: Any) -> AsyncKeyValueStore: ...


def store_module(url: str | None) -> tuple[StoreModule, str]:
    """The driver module that serves ``url`` (``None``: ``KVSOURCING_STORE``), and the URL;
    ``ConfigurationError`` for a missing, malformed or unsupported URL or a missing extra."""
    if url is None:
        url = os.environ.get(ENVIRONMENT_VARIABLE, "")
        if not url:
            raise ConfigurationError(
                f"no store URL: pass one to open_store() or set {ENVIRONMENT_VARIABLE}, "
                "for example memory:// or redis://localhost:6379/0"
            )
    if not isinstance(url, str) or "://" not in url:
        shown = redact_url(url) if isinstance(url, str) else url
        raise ConfigurationError(
            f"store URL {shown!r} has no scheme; expected one of " + ", ".join(f"{s}://" for s in _SCHEMES)
        )
    scheme = url.split("://", 1)[0].lower()
    if scheme not in _SCHEMES:
        raise ConfigurationError(
            f"unsupported store URL scheme {scheme!r} in {redact_url(url)!r}; supported: "
            + ", ".join(f"{s}://" for s in _SCHEMES)
        )
    module_name, extra = _SCHEMES[scheme]
    try:
        return cast(StoreModule, importlib.import_module(module_name)), url
    except ImportError as exc:
        raise ConfigurationError(
            f"{scheme}:// stores need the {extra!r} extra: pip install 'kvsourcing[{extra}]' ({exc})"
        ) from exc


def with_environment_cipher(options: dict[str, Any]) -> dict[str, Any]:
    """``options``, with a ``cipher`` made from ``KVSOURCING_CIPHER_KEY`` when none is given
    and the variable is set (see ``kvsourcing.crypto``)."""
    if options.get("cipher") is None and os.environ.get("KVSOURCING_CIPHER_KEY"):
        from kvsourcing.crypto import cipher_from_environment

        cipher = cipher_from_environment()
        if cipher is not None:
            return {**options, "cipher": cipher}
    return options


def open_store(url: str | None = None, **options: Any) -> KeyValueStore:
    """Open the event store that ``url`` names (``url=None`` reads ``KVSOURCING_STORE``).

    Options such as ``snapshot_interval`` and ``codec`` go to the driver's ``new_store``;
    without ``cipher=``, base64 keys in ``KVSOURCING_CIPHER_KEY`` make one (see
    ``kvsourcing.crypto``). A malformed URL or a bad option value raises ``ConfigurationError``.
    """
    module, url = store_module(url)
    options = with_environment_cipher(options)
    try:
        return module.from_url(url, **options)
    except ValueError as exc:
        if isinstance(exc, KvSourcingError):
            raise
        # A driver's own check of an option's value (say snapshot_interval=-1): as the
        # contract says, a bad option is a ConfigurationError (still a ValueError).
        raise ConfigurationError(str(exc)) from exc
