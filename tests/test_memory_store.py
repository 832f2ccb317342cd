"""The memory driver runs the whole compliance suite and the feed suite."""

import pytest

from kvsourcing.stores import memory
from kvsourcing.testing import FeedSuite, StoreSuite


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
