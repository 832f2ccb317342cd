"""The memory driver runs the whole compliance suite and the feed suite."""

from typing import Any

import pytest

from kvsourcing.stores import memory
from kvsourcing.stores.keyvalue.aio import AsyncKeyValueStore
from kvsourcing.testing import AsyncStoreSuite, FeedSuite, StoreSuite
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


def test_commit_ids_live_with_their_aggregate() -> None:
    from kvsourcing.stores.keyvalue import ALREADY_STORED, Commit

    driver = memory.MemoryDriver()
    assert driver.append(Commit("k", 0, [b"r1"], commit_id="cmd-1")) is None
    assert driver.append(Commit("k", 1, [b"r2"], commit_id="cmd-2")) is None
    assert driver.append(Commit("k", 2, [b"r3"], commit_id="cmd-1")) == ALREADY_STORED
    assert driver.append(Commit("other", 0, [b"r1"], commit_id="cmd-1")) is None, "ids are per aggregate"
    assert driver.load("k", 2, commit_id="cmd-1").stored
    assert not driver.load("k", 2, commit_id="cmd-3").stored


def test_read_events_refuses_a_negative_after() -> None:
    store = memory.new_store()
    counter = Counter("acct", store)
    for by in (1, 2, 3):
        counter.handle(Increment(by))
    with pytest.raises(ValueError, match="after"):
        store.read_events("acct", after=-1)  # gave events 3 and 4 numbered -1 and 0... wrongly
    assert [e.sequence for e in store.read_events("acct", after=1)] == [2, 3]


class TestAsyncMemoryStore(AsyncStoreSuite):
    shared = memory.new_store()

    async def new_store(self, *, snapshot_interval: int = 0) -> Any:
        driver = memory.AsyncMemoryDriver(self.shared.driver)  # type: ignore[arg-type]
        return AsyncKeyValueStore(driver, snapshot_interval=snapshot_interval)

    def new_sync_store(self) -> Any:
        return self.shared
