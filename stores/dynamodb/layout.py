"""Where everything lives in the table: item keys, attribute names and DynamoDB's limits.

Partition key ``k`` (string), sort key ``s`` (number)::

    k=<aggregate key>, s=0           the head: v=<head sequence>
    k=<aggregate key>, s=-1          the newest snapshot: n=<its sequence>, b=<state>
    k=<aggregate key>, s=<last seq>  a commit item: r=[<record>, ...], the records
                                     <last seq>-len(r)+1 .. <last seq>; i=<commit id>,
                                     t=<recorded at, epoch seconds>; a commit split over
                                     several items keeps i and t on its final item, and
                                     e=<commit's last seq> on the others
    k=<aggregate key>, s=<below -1>  a named commit's marker: i=<commit id>; its sort key
                                     is minus 2 + the first 15 bytes of the id's SHA-256,
                                     below the snapshot, the head and every commit item
    k=␟f␟<bucket>, s=0               the bucket's feed counter: c=<last reserved position>,
                                     w=<position trimmed through, if trimmed>
    k=␟f␟<bucket>, s=<position>      a feed entry: t=<recorded at>, a=<aggregate key>,
                                     f=<first sequence>, i=<commit id>, and either
                                     r=[<record>, ...] (inline) or l=<last sequence> (a
                                     reference to the commit items); a tombstone has ``t``
                                     only, and ``g`` when it fills a gap
    k=␟v␟<name>, s=0                 a small value: d=<bytes> [x=<expiry, epoch seconds>]

(``␟`` is U+001F.) Aggregate keys hold no control characters (``kvsourcing.keys``), so
feed and value partitions never equal an aggregate's. Attribute names are one letter
because DynamoDB counts names in every item's size. The head stays small (a snapshot has
an item of its own), so a transaction's size is known before it is sent and a commit
pays write units for the head's few bytes, not for a snapshot. Items written before
commits kept their ids (no ``i``/``t``; markers in partitions ``<key>␟id␟<id>``; the
snapshot in the head as ``n`` and ``b``) still load; those old markers are no longer
read, and a head's old snapshot is removed by the next commit that writes a snapshot.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

from kvsourcing.errors import InvalidKeyError

ITEM_BYTES: Final = 400_000
"""DynamoDB's item limit, counted in decimal (< 400 KiB): a margin for our estimate, and
within moto's stricter 405 000-byte check."""
TRANSACTION_BYTES: Final = 4_000_000
"""A transaction's limit (< 4 MiB); moto does not enforce it, so the driver does."""
TRANSACTION_ACTIONS: Final = 100
PARTITION_KEY_BYTES: Final = 2048
BATCH_GET_KEYS: Final = 100
BATCH_WRITE_ITEMS: Final = 25

KEY_SCHEMA: Final[tuple[tuple[str, str, str], ...]] = (("k", "S", "HASH"), ("s", "N", "RANGE"))
"""The table's key schema: ``(attribute, type, key role)``."""

DEFAULT_BUCKETS: Final = 32
DEFAULT_FEED_GRACE: Final = 5.0
"""Seconds after which a reserved feed position that was never written is tombstoned."""

HEAD: Final = {"N": "0"}
SNAPSHOT: Final = {"N": "-1"}
SEPARATOR: Final = "\x1f"
_FEED_PREFIX: Final = "\x1ff\x1f"
VALUE_PREFIX: Final = "\x1fv\x1f"
_MARKER_DIGEST_BYTES: Final = 15  # 120 bits: 37 decimal digits, within a number's 38


def key_bytes(key: str) -> int:
    """The UTF-8 size of an aggregate key, or ``InvalidKeyError`` if DynamoDB cannot keep it."""
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKeyError(f"aggregate key {key!r} is not valid UTF-8 text") from None
    if SEPARATOR in key:
        raise InvalidKeyError(
            f"aggregate key {key!r} holds the control character '\\x1f', which the DynamoDB "
            "driver keeps for its own items"
        )
    if size > PARTITION_KEY_BYTES:
        raise InvalidKeyError(
            f"aggregate key of {size} bytes exceeds DynamoDB's partition key limit of "
            f"{PARTITION_KEY_BYTES} bytes (UTF-8)"
        )
    return size


def number(value: float) -> dict[str, str]:
    """A DynamoDB number of seconds, to the microsecond."""
    return {"N": f"{value:.6f}"}


def integer(value: int) -> dict[str, str]:
    return {"N": str(value)}


def item_key(partition: str, sort: int) -> dict[str, Any]:
    return {"k": {"S": partition}, "s": integer(sort)}


def feed_partition(bucket: int) -> str:
    """The partition key of bucket ``bucket``'s feed (its counter and its entries)."""
    return f"{_FEED_PREFIX}{bucket}"


def marker_sort_key(commit_id: str) -> int:
    """The sort key (below -1) of the marker of named commit ``commit_id``, in its
    aggregate's partition: never -1 (the snapshot), 0 (the head) nor positive (commit items)."""
    digest = hashlib.sha256(commit_id.encode("utf-8", "surrogatepass")).digest()
    return -2 - int.from_bytes(digest[:_MARKER_DIGEST_BYTES], "big")


def number_of(item: dict[str, Any], attribute: str) -> int:
    """A whole-number attribute of an item, 0 when it has none."""
    return int(item[attribute]["N"]) if attribute in item else 0


def head_sequence(item: dict[str, Any] | None) -> int:
    """The sequence recorded in a head item (as ``ALL_OLD`` returns it); 0 when absent."""
    return 0 if not item else number_of(item, "v")
