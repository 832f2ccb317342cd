"""The transfer hammer: accounts moving money in atomic commits of two aggregates, read
back through the aggregates and through a projection fed by the durable feed."""

from __future__ import annotations

import random
import threading
import time
import uuid
from typing import Any

from kvsourcing.handlers import EventHandlerBase
from kvsourcing.stores.keyvalue.consumer import FeedConsumer
from kvsourcing.testing.domain import Account, Deposit, Deposited, Open, Withdrawn, bank, transfer


class Balances(EventHandlerBase):
    """A projection of every account's balance, and of the metadata its events carried."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self.balances: dict[str, int] = {}
        self.applied: dict[str, int] = {}
        self.commit_ids: dict[tuple[str, int], str | None] = {}
        self.initialize(bank, self)
        self.automatic_wireup()

    def handle(self, published: Any) -> None:
        if not published.key.startswith(self.prefix):
            return
        if published.sequence <= self.applied.get(published.key, 0):
            return  # delivered again (at least once): applied already
        self.applied[published.key] = published.sequence
        self.commit_ids[published.key, published.sequence] = published.commit_id
        super().handle(published)

    def handle_deposited(self, key: str, sequence: int, event: Deposited) -> None:
        self.balances[key] = self.balances.get(key, 0) + event.amount

    def handle_withdrawn(self, key: str, sequence: int, event: Withdrawn) -> None:
        self.balances[key] = self.balances.get(key, 0) - event.amount


class TransferTests:
    """``FeedSuite`` inherits these; ``store`` is its fixture."""

    transfer_threads = 4
    transfers_per_thread = 250
    accounts = 20

    def test_transfer_hammer_conserves_money_in_streams_and_feed(self, store: Any) -> None:
        prefix = f"hammer-{uuid.uuid4().hex[:8]}-"
        keys = [f"{prefix}{n}{{{prefix}}}" for n in range(self.accounts)]
        for key in keys:
            account = Account(key, store)
            account.handle(Open("bank"))
            account.handle(Deposit(1_000))
        errors: list[BaseException] = []
        moved = [0] * self.transfer_threads

        def worker(index: int) -> None:
            rng = random.Random(index)
            try:
                for n in range(self.transfers_per_thread):
                    source, target = rng.sample(keys, 2)
                    if transfer(
                        store, source, target, rng.randint(1, 300), f"t-{index}-{n}", attempts=10_000
                    ):
                        moved[index] += 1
            except BaseException as exc:
                errors.append(exc)

        pool = [threading.Thread(target=worker, args=(i,)) for i in range(self.transfer_threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join(timeout=500)
        assert not errors, errors
        assert sum(moved) > 0
        balances = {}
        events = 0
        for key in keys:
            account = Account(key, store)
            account.refresh()
            replayed = sum(
                e.data["amount"] * (1 if e.event_type == "Deposited" else -1)
                for e in store.read_events(key)
                if e.event_type in ("Deposited", "Withdrawn")
            )
            assert replayed == account.balance >= 0, key
            balances[key] = account.balance
            events += account.sequence_number()
        assert sum(balances.values()) == 1_000 * len(keys), "money is conserved"
        assert events == 2 * len(keys) + 2 * sum(moved), "every transfer wrote both accounts once"
        projection = Balances(prefix)
        consumer = FeedConsumer(store, f"balances-{uuid.uuid4().hex[:8]}", bank, poll_interval=0.01)
        consumer.add_handler(projection)
        deadline = time.monotonic() + 120
        while sum(projection.applied.values()) < events:
            assert time.monotonic() < deadline, "the projection did not catch up"
            if not consumer.run_once():
                time.sleep(0.01)
        consumer.stop()
        assert projection.balances == balances
        transfer_ids = {cid for cid in projection.commit_ids.values() if cid and cid.startswith("t-")}
        assert len(transfer_ids) == sum(moved), "each transfer's id reached the feed"
