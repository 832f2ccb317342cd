"""Reading an aggregate back (sans-IO): the requests, and what their replies hold.

A load reads the head (``ConsistentRead``) for the head sequence and the snapshot, in the
same ``BatchGetItem`` as a named commit's marker when ``load`` is asked about a commit id,
then ``Query``s ``s > start`` (``ConsistentRead``, following ``LastEvaluatedKey``): every
item holding a record after ``start`` has a sort key above it (markers are below 0), and
the first one's earlier records are dropped. A ``Query`` is read-committed per item, so
it might see part of a split commit being applied: a gap in the sequences, or a final
item still carrying ``e``, means the view was torn, and the ``Query`` is read again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kvsourcing.stores.dynamodb.layout import HEAD, integer, item_key, marker_sort_key, number_of
from kvsourcing.stores.keyvalue.records import CommitInfo, Snapshot


def head_keys(key: str, commit_id: str | None) -> list[dict[str, Any]]:
    """The keys of the aggregate's head and, with ``commit_id``, of that commit's marker."""
    keys = [{"k": {"S": key}, "s": HEAD}]
    if commit_id is not None:
        keys.append(item_key(key, marker_sort_key(commit_id)))
    return keys


def split_head(items: list[dict[str, Any]], commit_id: str | None) -> tuple[dict[str, Any] | None, bool]:
    """The head among ``items`` (``None``: nothing stored), and whether the marker of
    ``commit_id`` is among them with that very id."""
    head = next((item for item in items if item["s"] == HEAD), None)
    stored = commit_id is not None and any(
        item["s"] != HEAD and item.get("i", {}).get("S") == commit_id for item in items
    )
    return head, stored


def from_head(head: dict[str, Any] | None, after: int) -> tuple[Snapshot | None, int, bool]:
    """``(snapshot newer than after, sequence to read records after, up to date)`` from the head."""
    if head is None:
        return None, after, True
    snapshot = None
    if "n" in head and number_of(head, "n") > after:
        snapshot = Snapshot(number_of(head, "n"), head["b"]["B"])
    start = after if snapshot is None else snapshot.sequence
    return snapshot, start, number_of(head, "v") <= start


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
    ``last`` asks for).
    """

    start: int
    last: int | None = None
    found: list[bytes] = field(default_factory=list)
    commits: list[CommitInfo] = field(default_factory=list)
    _first: int | None = None
    _unfinished: bool = False

    def add(self, items: list[dict[str, Any]]) -> bool:
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
