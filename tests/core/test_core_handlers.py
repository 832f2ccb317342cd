"""EventHandlerBase wire-up and dispatch, the middleware wrapper, and TestStore."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pytest

from kvsourcing import (
    AggregateBase,
    EventHandler,
    EventHandlerBase,
    EventStore,
    EventStoreWithMiddleware,
    PublishedEvent,
    StandardEventRegistry,
    TestStore,
    TestStoreHistoryItem,
    default_test_store_filter,
    new_middleware_wrapper,
    new_test_store,
    test_store_failure_filter,
)
from kvsourcing.stores import memory


@dataclass
class Deposited:
    amount: int


@dataclass
class Withdrawn:
    amount: int


@dataclass
class Frozen:
    pass


def registry() -> StandardEventRegistry:
    reg = StandardEventRegistry("bank")
    reg.register_event(Deposited)
    reg.register_event(Withdrawn)
    reg.register_event(Frozen)
    return reg


class Projection(EventHandlerBase):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, int, Any]] = []
        self.initialize(registry(), self)
        self.automatic_wireup(self)

    def handle_deposit(self, key: str, sequence: int, event: Deposited) -> None:
        self.seen.append((key, sequence, event))

    def handle_withdrawal(self, key: str, sequence: int, event: Withdrawn) -> None:
        self.seen.append((key, sequence, event))

    # other shapes: skipped
    def handle_short(self, key: str, event: Frozen) -> None:
        raise AssertionError("must not be wired")


def published(event: Any, key: str = "acct", sequence: int = 1) -> PublishedEvent:
    event_type, _ = registry().get_event_type(event)
    return PublishedEvent("bank", event_type, key, sequence, event)


def test_published_event_is_a_dataclass_with_the_event_object_as_data() -> None:
    event = PublishedEvent("bank", "Deposited", "acct", 3, Deposited(1))
    assert [f.name for f in dataclasses.fields(PublishedEvent)] == [
        "domain",
        "type",
        "key",
        "sequence",
        "data",
        "commit_id",
        "recorded_at",
    ], "Go's five fields first, ours after them with defaults"
    assert (event.commit_id, event.recorded_at) == (None, None)
    assert event.data == Deposited(1)
    assert event == PublishedEvent(domain="bank", type="Deposited", key="acct", sequence=3, data=Deposited(1))


def test_event_handler_dispatches_by_event_type() -> None:
    projection = Projection()
    assert isinstance(projection, EventHandler)
    projection.handle(published(Deposited(5), "a", 1))
    projection.handle(published(Withdrawn(2), "a", 2))
    assert projection.seen == [("a", 1, Deposited(5)), ("a", 2, Withdrawn(2))]


def test_event_handler_ignores_unknown_types_and_other_shapes() -> None:
    projection = Projection()
    projection.handle(published(Frozen()))
    projection.handle(PublishedEvent("bank", "NoSuchEvent", "a", 1, {"x": 1}))
    assert projection.seen == []


def test_event_handler_initialize_wires_up_the_subject_at_once() -> None:
    """eventhandler_base.go (go-gadgets/eventsourcing): Initialize calls AutomaticWireup(self)."""

    class Sink:
        def __init__(self) -> None:
            self.amounts: list[int] = []

        def handle_it(self, key: str, sequence: int, event: Deposited) -> None:
            self.amounts.append(event.amount)

    sink = Sink()
    base = EventHandlerBase()
    base.initialize(registry(), sink)
    base.handle(published(Deposited(7)))
    assert sink.amounts == [7]


def test_event_handler_uses_the_registry_type_name() -> None:
    reg = StandardEventRegistry("bank")
    reg.register_event(Deposited, name="MoneyIn")
    seen = []

    class Named(EventHandlerBase):
        def handle_in(self, key: str, sequence: int, event: Deposited) -> None:
            seen.append(event)

    handler = Named()
    handler.initialize(reg, handler)
    handler.automatic_wireup(handler)
    handler.handle(PublishedEvent("bank", "Deposited", "k", 1, Deposited(1)))
    handler.handle(PublishedEvent("bank", "MoneyIn", "k", 2, Deposited(2)))
    assert seen == [Deposited(2)]


# middleware


class Recorder:
    """An inner store that logs calls."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def commit_events(self, writer: Any) -> None:
        self.log.append("inner-commit")

    def refresh(self, reader: Any) -> None:
        self.log.append("inner-refresh")

    def close(self) -> None:
        self.log.append("inner-close")


def middleware(log: list[str], name: str) -> Any:
    def mw(adapter: Any, next_: Any) -> None:
        log.append(f"{name}-before:{adapter}")
        next_()
        log.append(f"{name}-after")

    return mw


def test_middleware_added_last_runs_outermost() -> None:
    log: list[str] = []
    store = new_middleware_wrapper(Recorder(log))
    assert isinstance(store, EventStoreWithMiddleware) and isinstance(store, EventStore)
    store.handle_commit(middleware(log, "first"))
    store.handle_commit(middleware(log, "second"))
    store.commit_events("w")
    assert log == ["second-before:w", "first-before:w", "inner-commit", "first-after", "second-after"]


def test_refresh_middleware_order_and_use_skips_none() -> None:
    log: list[str] = []
    store = new_middleware_wrapper(Recorder(log))
    store.use(None, middleware(log, "a"), None)
    store.use(refresh=middleware(log, "b"))
    store.use(None, None, None)
    store.refresh("r")
    assert log == ["b-before:r", "a-before:r", "inner-refresh", "a-after", "b-after"]
    log.clear()
    store.commit_events("w")
    assert log == ["inner-commit"]
    log.clear()
    store.close()
    assert log == ["inner-close"]


def test_middleware_can_short_circuit() -> None:
    log: list[str] = []
    store = new_middleware_wrapper(Recorder(log))
    store.handle_commit(lambda writer, next_: log.append("blocked"))
    store.commit_events("w")
    assert log == ["blocked"]


def test_cleanups_run_in_order_then_inner_close() -> None:
    log: list[str] = []
    store = new_middleware_wrapper(Recorder(log))
    store.use(middleware(log, "c"), None, lambda: log.append("cleanup-1"))
    store.handle_cleanup(lambda: log.append("cleanup-2"))
    store.close()
    assert log == ["cleanup-1", "cleanup-2", "inner-close"]


def test_wrapper_is_a_context_manager() -> None:
    log: list[str] = []
    with new_middleware_wrapper(Recorder(log)) as store:
        assert isinstance(store, EventStoreWithMiddleware)
        store.handle_cleanup(lambda: log.append("cleanup"))
    assert log == ["cleanup", "inner-close"]


def test_wrapper_around_a_real_store_with_an_aggregate() -> None:
    class Account(AggregateBase):
        def __init__(self, store: Any) -> None:
            super().__init__()
            self.balance = 0
            self.initialize("acct", registry(), store)
            self.automatic_wireup()

        def replay_deposited(self, event: Deposited) -> None:
            self.balance += event.amount

    commits: list[tuple[int, list[Any]]] = []
    store = new_middleware_wrapper(memory.new_store())

    def audit(writer: Any, next_: Any) -> None:
        commits.append(writer.get_uncommitted_events())
        next_()

    store.handle_commit(audit)
    account = Account(store)
    account.apply_event(Deposited(3))
    account.commit()
    reader = Account(store)
    reader.refresh()
    assert commits == [(0, [Deposited(3)])]
    assert reader.balance == 3


# TestStore


class Counter(AggregateBase):
    def __init__(self, key: str, store: Any) -> None:
        super().__init__()
        self.total = 0
        self.initialize(key, registry(), store)
        self.automatic_wireup()

    def replay_deposited(self, event: Deposited) -> None:
        self.total += event.amount


def test_test_store_is_not_collected_and_is_an_event_store() -> None:
    assert TestStore.__test__ is False
    store = new_test_store()
    assert isinstance(store, TestStore) and isinstance(store, EventStore)
    assert store.history == []
    assert store.error_filter is default_test_store_filter
    assert default_test_store_filter() is None


def test_test_store_records_commits_as_history_items() -> None:
    store = new_test_store()
    counter = Counter("k", store)
    counter.apply_event(Deposited(1))
    counter.apply_event(Deposited(2))
    counter.commit()
    counter.apply_event(Deposited(3))
    counter.commit()
    assert store.history == [
        TestStoreHistoryItem("k", 0, [Deposited(1), Deposited(2)], counter),
        TestStoreHistoryItem("k", 2, [Deposited(3)], counter),
    ]
    assert [f.name for f in dataclasses.fields(TestStoreHistoryItem)] == ["key", "offset", "events", "state"]


def test_failure_filter_makes_operations_raise_and_record_nothing() -> None:
    err = RuntimeError("injected")
    store = TestStore()
    counter = Counter("k", store)
    store.error_filter = test_store_failure_filter(err)
    assert store.error_filter() is err
    with pytest.raises(RuntimeError) as caught:
        store.close()
    assert caught.value is err
    with pytest.raises(RuntimeError, match="injected"):
        counter.refresh()
    counter.apply_event(Deposited(1))
    with pytest.raises(RuntimeError, match="injected"):
        counter.commit()
    assert store.history == [] and counter.is_dirty()


def test_error_filter_is_consulted_on_each_call() -> None:
    calls: list[int] = []

    def flaky() -> BaseException | None:
        calls.append(1)
        return ValueError("odd") if len(calls) % 2 else None

    store = TestStore(error_filter=flaky)
    with pytest.raises(ValueError):
        store.close()
    store.close()
    assert len(calls) == 2


def test_test_store_is_a_context_manager_that_closes() -> None:
    with TestStore() as store:
        assert isinstance(store, TestStore)
    with pytest.raises(OSError, match="on close"), TestStore() as failing:
        failing.error_filter = test_store_failure_filter(OSError("on close"))


def test_wrapper_closes_the_inner_store_even_when_a_cleanup_raises() -> None:
    import pytest

    from kvsourcing import new_middleware_wrapper

    closed: list[str] = []

    class Inner:
        def commit_events(self, writer: object) -> None: ...
        def refresh(self, reader: object) -> None: ...
        def close(self) -> None:
            closed.append("inner")

    def failing() -> None:
        raise RuntimeError("cleanup failed")

    wrapper = new_middleware_wrapper(Inner())
    wrapper.handle_cleanup(failing)
    with pytest.raises(RuntimeError, match="cleanup failed"):
        wrapper.close()
    assert closed == ["inner"]
