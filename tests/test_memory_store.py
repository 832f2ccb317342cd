"""The memory driver runs the whole compliance suite."""

import pytest

from kvsourcing.stores import memory
from kvsourcing.testing import FeedSuite, StoreSuite


class TestMemoryStore(StoreSuite):
    def new_store(self, *, snapshot_interval: int = 0):
        return memory.new_store(snapshot_interval=snapshot_interval)


class TestMemoryFeed(FeedSuite):
    @pytest.fixture(scope="class")
    def shared(self):
        return memory.new_store()

    @pytest.fixture(autouse=True)
    def _bind(self, shared):
        self.shared = shared

    def new_store(self, *, snapshot_interval: int = 0):
        return self.shared
