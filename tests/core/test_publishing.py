"""Go-parity publishing: publish and logging middleware, the in-process distributor."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from kvsourcing import (
    EventHandlerBase,
    InProcessDistributor,
    PublishedEvent,
    new_logging_middleware,
    new_middleware_wrapper,
    new_publish_middleware,
)
from kvsourcing.errors import ConcurrencyFault
from kvsourcing.stores import memory
from kvsourcing.testing.domain import Counter, Increment, Incremented, registry


class Recording:
    def __init__(self) -> None:
        self.published: list[tuple[str, int, object]] = []

    def publish(self, key: str, sequence: int, event: object) -> None:
        self.published.append((key, sequence, event))


def test_publish_middleware_publishes_each_event_after_the_commit() -> None:
    publisher = Recording()
    store = new_middleware_wrapper(memory.new_store())
    store.handle_commit(new_publish_middleware(publisher))
    counter = Counter("acct", store)
    counter.handle(Increment(2))
    counter.apply_event(Incremented(3))
    counter.apply_event(Incremented(4))
    counter.commit()
    assert publisher.published == [
        ("acct", 1, Incremented(2)),
        ("acct", 2, Incremented(3)),
        ("acct", 3, Incremented(4)),
    ]


def test_publish_middleware_publishes_nothing_when_the_commit_fails() -> None:
    publisher = Recording()
    inner = memory.new_store()
    store = new_middleware_wrapper(inner)
    store.handle_commit(new_publish_middleware(publisher))
    Counter("acct", inner).handle(Increment())
    stale = Counter("acct", store)
    stale.apply_event(Incremented())
    with pytest.raises(ConcurrencyFault):
        stale.commit()
    assert publisher.published == []


def test_logging_middleware_logs_a_line_per_commit_and_refresh(caplog: pytest.LogCaptureFixture) -> None:
    store = new_middleware_wrapper(memory.new_store())
    store.use(*new_logging_middleware())
    with caplog.at_level(logging.INFO, logger="kvsourcing"):
        Counter("acct-7", store).handle(Increment())
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("refresh acct-7 at sequence 0 in ") and lines[0].endswith(" ms")
    assert lines[1].startswith("commit acct-7 at sequence 1 in ")


class Totals(EventHandlerBase):
    def __init__(self) -> None:
        super().__init__()
        self.totals: dict[str, int] = {}
        self.order: list[int] = []
        self.initialize(registry(), self)
        self.automatic_wireup(self)

    def handle_incremented(self, key: str, sequence: int, event: Incremented) -> None:
        self.totals[key] = self.totals.get(key, 0) + event.by
        self.order.append(sequence)


class Broken:
    def handle(self, published: PublishedEvent) -> None:
        raise RuntimeError("projection database is down")


@dataclass
class Seen:
    events: list[PublishedEvent]

    def handle(self, published: PublishedEvent) -> None:
        self.events.append(published)


def test_distributor_delivers_in_order_to_every_handler_despite_a_failing_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    distributor = InProcessDistributor(registry())
    totals, seen = Totals(), Seen([])
    for handler in (Broken(), totals, seen):
        distributor.add_handler(handler)
    store = new_middleware_wrapper(memory.new_store())
    store.handle_commit(new_publish_middleware(distributor))
    distributor.start()
    counter = Counter("acct", store)
    for by in range(1, 21):
        counter.handle(Increment(by))
    with caplog.at_level(logging.ERROR, logger="kvsourcing"):
        distributor.stop()
    assert totals.totals == {"acct": 210}
    assert totals.order == list(range(1, 21))
    assert seen.events[0] == PublishedEvent("compliance", "Incremented", "acct", 1, Incremented(1))
    assert "projection database is down" in caplog.text


def test_publish_middleware_publishes_nothing_for_a_commit_id_already_stored() -> None:
    publisher = Recording()
    inner = memory.new_store()
    store = new_middleware_wrapper(inner)
    store.handle_commit(new_publish_middleware(publisher))
    counter = Counter("acct", store)
    assert counter.handle(Increment(5), commit_id="command-1") == [Incremented(5)]
    assert counter.handle(Increment(5), commit_id="command-1") == []  # a re-sent command
    assert [(e.sequence, e.data) for e in inner.read_events("acct")] == [(1, {"by": 5})]
    assert publisher.published == [("acct", 1, Incremented(5))], "sequence 2 was never stored"


def test_publishing_after_an_already_stored_commit_resumes_with_the_next_commit() -> None:
    """The writer's 'already stored' answer belongs to one commit, even when the store is
    called directly (``commit_events``) rather than through ``commit()``."""
    publisher = Recording()
    inner = memory.new_store()
    store = new_middleware_wrapper(inner)
    store.handle_commit(new_publish_middleware(publisher))
    counter = Counter("acct", store)
    counter.handle(Increment(5), commit_id="command-1")
    assert counter.handle(Increment(5), commit_id="command-1") == []
    counter.apply_event(Incremented(2))
    store.commit_events(counter)
    assert [(s, e) for _, s, e in publisher.published] == [(1, Incremented(5)), (2, Incremented(2))]
