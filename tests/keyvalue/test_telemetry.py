"""OpenTelemetry spans and metrics on every store, read back through the SDK's in-memory
exporter and metric reader; and nothing at all without the API, or without a provider."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from backends import Backend, read
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import StatusCode

from kvsourcing.errors import ConcurrencyFault, DirtyAggregateError
from kvsourcing.stores import memory
from kvsourcing.stores.keyvalue import FeedConsumer, KeyValueStore
from kvsourcing.telemetry import traced_commit, traced_refresh
from kvsourcing.testing.domain import Counter, Incremented, registry

SYSTEMS = {"memory": "memory", "redis": "redis", "dynamodb": "aws.dynamodb"}


class _Switch(Sampler):
    """Records spans only during this module's tests: the providers are process-wide, and
    the rest of the session should not pay for, or fill memory with, spans."""

    on = False

    def should_sample(
        self, parent_context: Any, trace_id: int, name: str, kind: Any = None, attributes: Any = None, *_: Any
    ) -> SamplingResult:
        return SamplingResult(Decision.RECORD_AND_SAMPLE if self.on else Decision.DROP, attributes)

    def get_description(self) -> str:
        return "on/off switch"


@dataclass
class Telemetry:
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader

    def finished(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans.get_finished_spans() if span.name == name]

    def metric(self, name: str, **attributes: Any) -> tuple[float, int]:
        """``(sum, count)`` of a metric's points whose attributes include ``attributes``
        (a counter's count is 0)."""
        total, count = 0.0, 0
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        if all(point.attributes.get(k) == v for k, v in attributes.items()):
                            total += getattr(point, "value", None) or getattr(point, "sum", 0)
                            count += getattr(point, "count", 0)
        return total, count


_SWITCH = _Switch()


@pytest.fixture(scope="module")
def providers() -> tuple[InMemorySpanExporter, InMemoryMetricReader]:
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider(sampler=_SWITCH)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return exporter, reader


@pytest.fixture
def telemetry(providers: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> Iterator[Telemetry]:
    _SWITCH.on = True
    providers[0].clear()
    yield Telemetry(*providers)
    _SWITCH.on = False


def test_commit_refresh_and_a_concurrency_fault(backend: Backend, telemetry: Telemetry) -> None:
    system = SYSTEMS[backend.name]
    store = backend.open()
    key = f"otel-{uuid.uuid4().hex[:8]}"
    committed_before = telemetry.metric("kvsourcing.events.committed", **{"db.system.name": system})[0]
    faults_before = telemetry.metric("kvsourcing.concurrency_faults", **{"db.system.name": system})[0]
    durations_before = telemetry.metric("kvsourcing.commit.duration", **{"db.system.name": system})[1]

    writer = Counter(key, store)
    writer.apply_event(Incremented(1))
    writer.apply_event(Incremented(2))
    writer.commit()
    (commit,) = telemetry.finished("kvsourcing.commit")
    assert commit.kind == trace.SpanKind.CLIENT and commit.status.status_code == StatusCode.UNSET
    assert dict(commit.attributes or {}) == {
        "db.system.name": system,
        "kvsourcing.aggregate.key": key,
        "kvsourcing.events": 2,
        "kvsourcing.sequence": 2,
    }

    reader = Counter(key, store)
    reader.refresh()
    (refresh,) = telemetry.finished("kvsourcing.refresh")
    assert (refresh.attributes or {})["kvsourcing.sequence"] == 2
    assert (refresh.attributes or {})["kvsourcing.events"] == 2
    assert (refresh.attributes or {})["db.system.name"] == system

    reader.apply_event(Incremented(3))
    reader.commit()
    writer.apply_event(Incremented(4))
    with pytest.raises(ConcurrencyFault):
        writer.commit()
    failed = telemetry.finished("kvsourcing.commit")[-1]
    assert failed.status.status_code == StatusCode.ERROR
    assert (failed.attributes or {})["error.type"] == "ConcurrencyFault"
    assert [event.attributes["exception.type"] for event in failed.events if event.attributes] == [
        f"{ConcurrencyFault.__module__}.ConcurrencyFault"
    ]
    with pytest.raises(DirtyAggregateError):
        store.refresh(writer)
    assert telemetry.finished("kvsourcing.refresh")[-1].status.status_code == StatusCode.ERROR

    on = {"db.system.name": system}
    assert telemetry.metric("kvsourcing.events.committed", **on)[0] - committed_before == 3
    assert telemetry.metric("kvsourcing.concurrency_faults", **on)[0] - faults_before == 1
    assert telemetry.metric("kvsourcing.commit.duration", **on)[1] - durations_before == 3
    assert telemetry.metric("kvsourcing.commit.duration", **on, **{"error.type": "ConcurrencyFault"})[1] >= 1
    assert telemetry.metric("kvsourcing.refresh.duration", **on)[1] >= 2


class _Failing:
    def handle(self, published: Any) -> None:
        raise RuntimeError("handler down")


def test_feed_delivery_span_and_lag(backend: Backend, telemetry: Telemetry) -> None:
    system = SYSTEMS[backend.name]
    store = backend.open()
    key = f"feed-{uuid.uuid4().hex[:8]}"
    writer = Counter(key, store)
    for by in (1, 2, 3):
        writer.apply_event(Incremented(by))
    writer.commit()
    seen: list[Any] = []
    consumer = FeedConsumer(store, f"otel{uuid.uuid4().hex[:6]}", registry())
    consumer.add_handler(type("Keep", (), {"handle": lambda self, published: seen.append(published)})())
    while consumer.run_once():
        pass
    delivered = [
        dict(s.attributes or {})
        for s in telemetry.finished("kvsourcing.feed.deliver")
        if s.kind == trace.SpanKind.CONSUMER
    ]
    (attributes,) = [a for a in delivered if a["kvsourcing.aggregate.key"] == key]
    assert {k: attributes[k] for k in ("kvsourcing.events", "kvsourcing.sequence", "db.system.name")} == {
        "kvsourcing.events": 3,
        "kvsourcing.sequence": 3,
        "db.system.name": system,
    }

    (entry,) = [
        e
        for e in store.driver.read_feed({b: None for b in range(store.driver.buckets)}, 1000)
        if e.key == key
    ]
    timed = dataclasses.replace(entry, recorded_at=time.time() - 2.0)
    lag_sum, lag_count = telemetry.metric("kvsourcing.feed.lag", **{"db.system.name": system})
    assert consumer._deliver(timed)
    after_sum, after_count = telemetry.metric("kvsourcing.feed.lag", **{"db.system.name": system})
    assert after_count == lag_count + 1 and after_sum - lag_sum >= 2.0

    failing = FeedConsumer(store, f"otel{uuid.uuid4().hex[:6]}", registry(), on_error=lambda *_: None)
    failing.add_handler(_Failing())
    assert not failing._deliver(entry)
    assert telemetry.finished("kvsourcing.feed.deliver")[-1].status.status_code == StatusCode.ERROR
    assert telemetry.metric("kvsourcing.feed.lag", **{"db.system.name": system})[1] == after_count
    consumer.stop()
    failing.stop()


def _run(script: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_without_the_api_nothing_is_imported_and_nothing_changes() -> None:
    out = _run(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if opentelemetry-api were not installed
        from kvsourcing.stores import memory
        from kvsourcing.stores.keyvalue import KeyValueStore, consumer
        from kvsourcing.testing.domain import Counter, Incremented
        store = memory.new_store()
        counter = Counter("k", store)
        counter.apply_event(Incremented(5))
        counter.commit()
        reader = Counter("k", store)
        reader.refresh()
        assert reader.count == 5
        assert not hasattr(KeyValueStore.commit_events, "__wrapped__")
        assert not hasattr(KeyValueStore.refresh, "__wrapped__")
        assert not hasattr(consumer.FeedConsumer._deliver, "__wrapped__")
        print(sorted(name for name in sys.modules if name.startswith("opentelemetry") and sys.modules[name]))
        """
    )
    assert out.strip() == "[]"


def test_with_the_api_but_no_provider_nothing_is_made_until_one_is_set() -> None:
    out = _run(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from kvsourcing import telemetry
        from kvsourcing.stores import memory
        from kvsourcing.testing.domain import Counter, Incremented
        store = memory.new_store()
        counter = Counter("k", store)
        counter.apply_event(Incremented(5))
        counter.commit()
        assert telemetry._live is None, "instruments made without a provider"
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        counter.apply_event(Incremented(1))
        counter.commit()
        print([span.name for span in exporter.get_finished_spans()])
        """
    )
    assert out.strip() == "['kvsourcing.commit']"


class _Together:
    """A store's ``commit_together`` and coroutine methods, decorated as a store's own are."""

    def __init__(self, store: KeyValueStore) -> None:
        self.store, self.driver = store, store.driver

    @traced_commit
    def commit_together(self, writers: list[Counter]) -> None:
        for writer in writers:
            KeyValueStore.commit_events.__wrapped__(self.store, writer)  # type: ignore[attr-defined]

    @traced_commit
    async def acommit(self, writer: Counter) -> None:
        KeyValueStore.commit_events.__wrapped__(self.store, writer)  # type: ignore[attr-defined]

    @traced_refresh
    async def arefresh(self, reader: Counter) -> None:
        KeyValueStore.refresh.__wrapped__(self.store, reader)  # type: ignore[attr-defined]


def test_commit_together_and_coroutines_are_traced_too(telemetry: Telemetry) -> None:
    store = memory.new_store()
    together = _Together(store)
    first, second = Counter("t-1", store), Counter("t-2", store)
    first.apply_event(Incremented(1))
    second.apply_event(Incremented(1))
    second.apply_event(Incremented(1))
    before = telemetry.metric("kvsourcing.events.committed", **{"db.system.name": "memory"})[0]
    together.commit_together([first, second])
    (span,) = telemetry.finished("kvsourcing.commit")
    assert dict(span.attributes or {}) == {
        "db.system.name": "memory",
        "kvsourcing.aggregate.key": ("t-1", "t-2"),
        "kvsourcing.events": 3,
    }
    assert telemetry.metric("kvsourcing.events.committed", **{"db.system.name": "memory"})[0] - before == 3

    third = Counter("t-3", store)
    third.apply_event(Incremented(1))
    together.commit_together(writer for writer in [third])  # type: ignore[arg-type]
    assert Counter("t-3", store).sequence_number() == 0 and read(store, "t-3").count == 1
    assert dict(telemetry.finished("kvsourcing.commit")[-1].attributes or {}) == {"db.system.name": "memory"}

    stale = Counter("t-1", store)
    stale.apply_event(Incremented(5))
    with pytest.raises(ConcurrencyFault):
        asyncio.run(together.acommit(stale))  # at 0 while the store holds 1
    failed = telemetry.finished("kvsourcing.commit")[-1]
    assert failed.status.status_code == StatusCode.ERROR
    assert (failed.attributes or {})["kvsourcing.aggregate.key"] == "t-1"
    reader = Counter("t-2", store)
    asyncio.run(together.arefresh(reader))
    refresh = telemetry.finished("kvsourcing.refresh")[-1]
    assert (refresh.attributes or {})["kvsourcing.aggregate.key"] == "t-2"
    assert (refresh.attributes or {})["kvsourcing.sequence"] == 2 and reader.count == 2
