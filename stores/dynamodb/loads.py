"""Reading an aggregate back (sans-IO): the requests, and what their replies hold.

A load reads the head (``ConsistentRead``) for the head sequence, and the snapshot item,
in one ``BatchGetItem`` with a named commit's marker when ``load`` is asked about a
commit id. They are read item by item, and need not be read together: the snapshot
carries its own sequence, and any snapshot with the records after it is a true state.
Then it ``Query``s ``s > start`` (``ConsistentRead``, following ``LastEvaluatedKey``):
every item holding a record after ``start`` has a sort key above it (the snapshot and the
markers are below 0), and the first one's earlier records are dropped. A ``Query`` is
read-committed per item, so it might see part of a split commit being applied, or of a
commit being repacked by ``rewrite``: a gap in the sequences, records seen twice, or a
final item still carrying ``e``, means the view was torn, and the ``Query`` is read again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kvsourcing.stores.dynamodb.layout import HEAD, SNAPSHOT, integer, item_key, marker_sort_key, number_of
from kvsourcing.stores.keyvalue.records import CommitInfo, Snapshot


def head_keys(key: str, use_snapshot: bool, commit_id: str | None) -> list[dict[str, Any]]:
    """The keys of the aggregate's head and snapshot (``use_snapshot``) and of the marker of
    ``commit_id`` (when given)."""
    keys = [{"k": {"S": key}, "s": HEAD}, {"k": {"S": key}, "s": SNAPSHOT}] if use_snapshot else []
    if commit_id is not None:
        keys.append(item_key(key, marker_sort_key(commit_id)))
    return keys


@dataclass(frozen=True, slots=True)
class Head:
    """What the head's ``BatchGetItem`` found: the head, the snapshot item, and whether the
    marker of the commit id asked about holds that very id."""

    head: dict[str, Any] | None
    snapshot: dict[str, Any] | None
    stored: bool


def read_head(items: list[dict[str, Any]], commit_id: str | None) -> Head:
    by_sort = {item["s"]["N"]: item for item in items}
    marker = by_sort.get(str(marker_sort_key(commit_id))) if commit_id is not None else None
    stored = marker is not None and marker.get("i", {}).get("S") == commit_id
    return Head(by_sort.get(HEAD["N"]), by_sort.get(SNAPSHOT["N"]), stored)


def from_head(found: Head, after: int) -> tuple[Snapshot | None, int, bool]:
    """``(snapshot newer than after, sequence to read records after, up to date)``: the
    newest of the snapshot item and a head's snapshot of earlier releases."""
    if found.head is None:
        return None, after, True
    snapshot = None
    for item in (found.snapshot, found.head):
        if (
            item is not None
            and "n" in item
            and number_of(item, "n") > max(after, snapshot.sequence if snapshot else 0)
        ):
            snapshot = Snapshot(number_of(item, "n"), item["b"]["B"])
    start = after if snapshot is None else snapshot.sequence
    return snapshot, start, number_of(found.head, "v") <= start


def records_query(table: str, key: str, start: int, last: int | None = None) -> dict[str, Any]:
    """The ``Query`` of the items holding records after ``start`` (up to ``last``, the end
    of one commit, as a feed entry refers to it)."""
    values = {":k": {"S": key}, ":s": integer(start)}
    condition = "k = :k AND s > :s"
    if last is not None:
        values = {":k": {"S": key}, ":s": integer(start + 1), ":l": integer(last)}
        condition = "k = :k AND s BETWEEN :s AND :l"
    return {
        "TableName": table,
        "KeyConditionExpression": condition,
        "ExpressionAttributeValues": values,
        "ConsistentRead": True,
    }


@dataclass(slots=True)
class RecordsReading:
    """The records (and commits' metadata) of the pages of one ``records_query``, as they come.

    ``add`` returns ``False`` as soon as the view is torn (a gap); ``records()`` is
    ``None`` when it ended torn (a split commit seen in part, or fewer records than
    ``last`` asks for). ``items`` keeps the items added (``rewrite`` reads their layout).
    """

    start: int
    last: int | None = None
    found: list[bytes] = field(default_factory=list)
    commits: list[CommitInfo] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    _first: int | None = None
    _unfinished: bool = False

    def add(self, items: list[dict[str, Any]]) -> bool:
        self.items.extend(items)
        for item in items:
            values = item["r"]["L"]
            end = int(item["s"]["N"])
            first = end - len(values) + 1
            skip = self.start + 1 + len(self.found) - first
            if skip < 0 or (self.found and skip):
                return False
            self.found.extend(value["B"] for value in values[skip:])
            self._unfinished = "e" in item
            if self._first is None:
                self._first = first
            if not self._unfinished:
                if "t" in item:
                    commit_id = item["i"]["S"] if "i" in item else None
                    self.commits.append(CommitInfo(self._first, end, commit_id, float(item["t"]["N"])))
                self._first = None
        return True

    def records(self) -> list[bytes] | None:
        if self._unfinished or (self.last is not None and len(self.found) != self.last - self.start):
            return None
        return self.found
