"""The memory driver runs the whole compliance suite and the feed suite."""

import pytest

from kvsourcing.stores import memory
from kvsourcing.testing import FeedSuite, StoreSuite
from kvsourcing.testing.domain import Counter, Increment


class TestMemoryStore(StoreSuite):
    def new_store(self, *, snapshot_interval: int = 0):
        return memory.new_store(snapshot_interval=snapshot_interval)


@pytest.fixture(scope="module")
def shared_memory_store():
    return memory.new_store()


class TestMemoryFeed(FeedSuite):
    @pytest.fixture(autouse=True)
    def _bind(self, shared_memory_store):
        self.shared = shared_memory_store

    def new_store(self, *, snapshot_interval: int = 0):
        return self.shared


def test_commit_ids_are_forgotten_after_their_ttl() -> None:
    import time

    from kvsourcing.stores.keyvalue import ALREADY_STORED, Commit

    driver = memory.MemoryDriver(commit_id_ttl=0.2)
    assert driver.append(Commit("k", 0, [b"r1"], commit_id="cmd-1")) is None
    assert driver.append(Commit("k", 0, [b"r1"], commit_id="cmd-1")) == ALREADY_STORED
    time.sleep(0.25)
    assert driver.append(Commit("k", 0, [b"r1"], commit_id="cmd-1")) == 1, "forgotten, yet the head protects"
    forever = memory.MemoryDriver(commit_id_ttl=None)
    assert forever.append(Commit("k", 0, [b"r1"], commit_id="cmd-1")) is None
    time.sleep(0.25)
    assert forever.append(Commit("k", 1, [b"r2"], commit_id="cmd-1")) == ALREADY_STORED
    for bad in (0, -1, float("inf"), float("nan"), 1e40, True):
        with pytest.raises(ValueError, match="commit_id_ttl"):
            memory.MemoryDriver(commit_id_ttl=bad)


def test_read_events_refuses_a_negative_after() -> None:
    store = memory.new_store()
    counter = Counter("acct", store)
    for by in (1, 2, 3):
        counter.handle(Increment(by))
    with pytest.raises(ValueError, match="after"):
        store.read_events("acct", after=-1)  # gave events 3 and 4 numbered -1 and 0... wrongly
    assert [e.sequence for e in store.read_events("acct", after=1)] == [2, 3]
