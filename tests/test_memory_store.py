"""The memory driver runs the whole compliance suite."""

from kvsourcing.stores import memory
from kvsourcing.testing import StoreSuite


class TestMemoryStore(StoreSuite):
    def new_store(self, *, snapshot_interval: int = 0):
        return memory.new_store(snapshot_interval=snapshot_interval)
