"""The records a driver and the tablestore base hand each other stay frozen value objects
(``Commit`` and ``FeedEntry`` are built through their slots, not dataclass's ``__init__``)."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from kvsourcing.stores.keyvalue import Commit, FeedEntry


def test_commit_takes_its_fields_by_position_or_name_with_their_defaults() -> None:
    commit = Commit("k", 2, [b"a", b"b"])
    assert (commit.snapshot, commit.commit_id, commit.named, commit.last) == (None, None, False, 4)
    named = Commit(key="k", expected=0, records=[b"a"], commit_id="c", named=True)
    assert named == Commit("k", 0, [b"a"], None, "c", True)
    assert list(inspect.signature(Commit).parameters) == [f.name for f in dataclasses.fields(Commit)]
    with pytest.raises(TypeError, match="records"):
        Commit("k", 0)  # type: ignore[call-arg]


def test_commit_and_feed_entry_are_frozen_and_hashable() -> None:
    entry = FeedEntry(3, "7", "k", 1, (b"a",))
    assert (entry.commit_id, entry.recorded_at) == (None, None)
    assert hash(entry) == hash(FeedEntry(3, "7", "k", 1, (b"a",)))
    assert dataclasses.replace(entry, recorded_at=1.5).recorded_at == 1.5
    commit = Commit("k", 0, (b"a",))
    for record, field in ((entry, "position"), (commit, "expected")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(record, field, 9)
    assert (
        repr(commit)
        == "Commit(key='k', expected=0, records=(b'a',), snapshot=None, commit_id=None, named=False)"
    )
