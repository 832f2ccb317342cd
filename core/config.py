"""``open_store(url)``: one entry point that picks a store by URL scheme, as ``dbm.open`` does."""

from __future__ import annotations

import importlib
import os
from typing import Any

from kvsourcing.errors import ConfigurationError
from kvsourcing.protocols import EventStore

ENVIRONMENT_VARIABLE = "KVSOURCING_STORE"

_SCHEMES: dict[str, tuple[str, str]] = {
    "memory": ("kvsourcing.stores.memory", ""),
    "redis": ("kvsourcing.stores.redis", "redis"),
    "rediss": ("kvsourcing.stores.redis", "redis"),
    "redis+cluster": ("kvsourcing.stores.redis", "redis"),
    "rediss+cluster": ("kvsourcing.stores.redis", "redis"),
    "dynamodb": ("kvsourcing.stores.dynamodb", "dynamodb"),
}


def supported_schemes() -> list[str]:
    """The URL schemes ``open_store`` understands."""
    return list(_SCHEMES)


def open_store(url: str | None = None, **options: Any) -> EventStore:
    """Open the event store that ``url`` names (``url=None`` reads ``KVSOURCING_STORE``).

    Options such as ``snapshot_interval`` and ``codec`` go to the driver's ``new_store``.
    """
    if url is None:
        url = os.environ.get(ENVIRONMENT_VARIABLE, "")
        if not url:
            raise ConfigurationError(
                f"no store URL: pass one to open_store() or set {ENVIRONMENT_VARIABLE}, "
                "for example memory:// or redis://localhost:6379/0"
            )
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"store URL {url!r} has no scheme; expected one of " + ", ".join(f"{s}://" for s in _SCHEMES)
        )
    scheme = url.split("://", 1)[0].lower()
    if scheme not in _SCHEMES:
        raise ConfigurationError(
            f"unsupported store URL scheme {scheme!r} in {url!r}; supported: "
            + ", ".join(f"{s}://" for s in _SCHEMES)
        )
    module_name, extra = _SCHEMES[scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"{scheme}:// stores need the {extra!r} extra: pip install 'kvsourcing[{extra}]' ({exc})"
        ) from exc
    return module.from_url(url, **options)
