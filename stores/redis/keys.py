"""Where the Redis driver keeps things: the key of every list, hash and stream it uses.

Pure data, no I/O: the sync driver and an asyncio one build the same keys. The layout is
described in the package docstring (``kvsourcing.stores.redis``).
"""

from __future__ import annotations

from kvsourcing.errors import ConfigurationError
from kvsourcing.stores.keyvalue import partition_bucket, validate_buckets

DEFAULT_PREFIX = "kvsourcing"
DEFAULT_BUCKETS = 1024
CACHED_AGGREGATES = 4096
"""How many aggregates' keys a ``Layout`` keeps built for their next commit."""


def validate_prefix(prefix: object) -> str:
    """Return ``prefix`` if it can open a hash tag: a non-empty ``str`` without braces."""
    if not isinstance(prefix, str) or not prefix:
        raise ConfigurationError(f"Redis key prefix must be a non-empty str, not {prefix!r}")
    if "{" in prefix or "}" in prefix:
        raise ConfigurationError(
            f"Redis key prefix {prefix!r} must not contain '{{' or '}}': it opens the bucket's hash tag"
        )
    return prefix


def encode_name(name: str) -> bytes:
    """An aggregate key or value name as it appears in a Redis key (UTF-8, verbatim)."""
    return name.encode("utf-8", "surrogatepass")


class Layout:
    """The keys of one store (``prefix``, ``buckets``); every key of an aggregate, its
    bucket's feed included, starts with the bucket's hash tag, so they share a slot."""

    __slots__ = ("_bucket_of_feed", "_commit_keys", "_feeds", "_tags", "_value_prefix", "buckets", "prefix")

    def __init__(self, prefix: str = DEFAULT_PREFIX, buckets: int = DEFAULT_BUCKETS) -> None:
        self.prefix = validate_prefix(prefix)
        self.buckets = validate_buckets(buckets, "Redis")
        self._tags = [f"{{{prefix}:b{bucket}}}:".encode() for bucket in range(buckets)]
        self._feeds = [tag + b"f" for tag in self._tags]
        self._bucket_of_feed = {feed: bucket for bucket, feed in enumerate(self._feeds)}
        self._value_prefix = f"{{{prefix}:v:".encode()
        self._commit_keys: dict[str, tuple[bytes, bytes, bytes, bytes]] = {}

    def bucket(self, key: str) -> int:
        """The bucket of aggregate ``key``."""
        return partition_bucket(key, self.buckets)

    def tag(self, bucket: int) -> bytes:
        """``{<prefix>:b<bucket>}:``, the start of every key of the bucket."""
        return self._tags[bucket]

    def keys(self, key: str) -> tuple[bytes, bytes, bytes]:
        """The events list, snapshot hash and commits hash of aggregate ``key``."""
        tag = self._tags[partition_bucket(key, self.buckets)]
        raw = encode_name(key)
        return tag + b"e:" + raw, tag + b"s:" + raw, tag + b"m:" + raw

    def commit_keys(self, key: str) -> tuple[bytes, bytes, bytes, bytes]:
        """``keys(key)``, then the feed of ``key``'s bucket: every key an append may name.
        Kept for the last ``CACHED_AGGREGATES`` aggregates (then forgotten together): an
        aggregate commits again and again, and a lookup costs a tenth of hashing its key
        and building its keys."""
        built = self._commit_keys.get(key)
        if built is None:
            bucket = partition_bucket(key, self.buckets)
            tag, raw = self._tags[bucket], encode_name(key)
            built = (tag + b"e:" + raw, tag + b"s:" + raw, tag + b"m:" + raw, self._feeds[bucket])
            if len(self._commit_keys) >= CACHED_AGGREGATES:
                self._commit_keys.clear()
            self._commit_keys[key] = built
        return built

    def feed_key(self, bucket: int) -> bytes:
        """The stream that is bucket ``bucket``'s feed (in the bucket's hash slot)."""
        return self._feeds[bucket]

    def bucket_of_feed(self, feed: bytes) -> int:
        """The bucket whose feed is the stream ``feed``."""
        return self._bucket_of_feed[feed]

    def value_key(self, name: str) -> bytes:
        """The string key holding the small value ``name`` (its own hash tag)."""
        return self._value_prefix + encode_name(name) + b"}"
