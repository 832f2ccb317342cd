"""Item size accounting by DynamoDB's rules, and the packing of records into items.

DynamoDB sizes an item as its attribute names plus their values: a string its UTF-8
bytes, a binary its raw bytes, a number about 1 byte per two digits plus 1, a list 3
bytes plus 1 per element. The estimates here are upper bounds, so that a commit the
driver accepts always fits, and one that would not is refused before anything is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from kvsourcing.errors import CommitTooLargeError
from kvsourcing.stores.dynamodb.layout import ITEM_BYTES

NUMBER_BYTES: Final = 21
"""Upper bound of a number's stored size (38 digits, a sign)."""
LIST_BYTES: Final = 3
ELEMENT_BYTES: Final = 1


def text_bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def base_bytes(partition_bytes: int) -> int:
    """An item's key attributes: ``k`` of ``partition_bytes`` and the number ``s``."""
    return len("k") + partition_bytes + len("s") + NUMBER_BYTES


def records_bytes(records: Sequence[bytes]) -> int:
    """The list ``r`` holding ``records``, with its name."""
    return len("r") + LIST_BYTES + sum(ELEMENT_BYTES + len(record) for record in records)


def head_bytes(key_size: int) -> int:
    """The head item: its key and the sequence ``v``."""
    return base_bytes(key_size) + len("v") + NUMBER_BYTES


def snapshot_bytes(key_size: int, snapshot: bytes) -> int:
    """The snapshot item: its key, the sequence ``n`` and the state ``b``."""
    return base_bytes(key_size) + len("n") + NUMBER_BYTES + len("b") + len(snapshot)


def marker_bytes(key_size: int, commit_id: str) -> int:
    return base_bytes(key_size) + len("i") + text_bytes(commit_id)


def metadata_bytes(commit_id: str | None) -> int:
    """A commit's ``i`` and ``t``, on its final commit item and its feed entry."""
    return (0 if commit_id is None else len("i") + text_bytes(commit_id)) + len("t") + NUMBER_BYTES


def feed_entry_bytes(key_size: int, commit_id: str | None) -> int:
    """A feed entry without its records or reference: key, aggregate, first sequence, id, time."""
    partition = len("\x1ff\x1f") + 20  # the feed prefix and a bucket number
    return base_bytes(partition) + len("a") + key_size + len("f") + NUMBER_BYTES + metadata_bytes(commit_id)


@dataclass(frozen=True, slots=True)
class Piece:
    """Records ``last-len(records)+1 .. last`` of a commit, stored as one item of ``size`` bytes."""

    last: int
    records: Sequence[bytes]
    size: int


def pack(
    records: Sequence[bytes], expected: int, key: str, key_size: int, commit_id: str | None
) -> list[Piece]:
    """Group a commit's records in order into items under ``ITEM_BYTES``; every item has
    room for the split marker ``e`` and the commit's ``i`` and ``t``."""
    empty = base_bytes(key_size) + len("r") + LIST_BYTES + len("e") + NUMBER_BYTES + metadata_bytes(commit_id)
    pieces: list[Piece] = []
    group: list[bytes] = []
    size = empty
    for index, record in enumerate(records):
        cost = ELEMENT_BYTES + len(record)
        if empty + cost > ITEM_BYTES:
            raise CommitTooLargeError(
                f"record {expected + index + 1} of {key!r} is {len(record)} bytes; a DynamoDB "
                f"item holds at most {ITEM_BYTES} bytes ({ITEM_BYTES - empty - ELEMENT_BYTES} "
                "for one record with this key and commit id): make the event smaller"
            )
        if group and size + cost > ITEM_BYTES:
            pieces.append(Piece(expected + index, group, size))
            group, size = [], empty
        group.append(record)
        size += cost
    if group:
        pieces.append(Piece(expected + len(records), group, size))
    return pieces
