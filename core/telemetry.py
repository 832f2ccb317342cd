"""OpenTelemetry spans and metrics of commits, refreshes and feed deliveries (the ``otel`` extra).

The store and the feed consumer mark the operations to trace with the decorators here.
Without ``opentelemetry-api`` installed, the decorators return the function itself: nothing
is imported and nothing changes. With the API but no SDK configured (no tracer or meter
provider set), each call costs one check of two module globals before running as it would;
once an application sets a provider, every call emits:

* spans ``kvsourcing.commit``, ``kvsourcing.refresh`` (kind CLIENT) and
  ``kvsourcing.feed.deliver`` (kind CONSUMER), with ``db.system.name``,
  ``kvsourcing.aggregate.key``, ``kvsourcing.events`` and ``kvsourcing.sequence``; a failed
  operation records its exception, ``error.type`` and an error status;
* histograms ``kvsourcing.commit.duration`` and ``kvsourcing.refresh.duration`` (seconds),
  counters ``kvsourcing.events.committed`` and ``kvsourcing.concurrency_faults``, and the
  histogram ``kvsourcing.feed.lag`` (seconds from commit to delivery, for feed entries that
  carry their ``recorded_at``), each with ``db.system.name`` (and ``error.type`` on failures).
  ``kvsourcing.events.committed`` counts the events of commits that returned without error,
  so a re-sent commit that the store found already stored counts them again.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from kvsourcing.errors import ConcurrencyFault

_INSTALLED: bool
"""Whether ``opentelemetry-api`` imports: without it, the decorators change nothing."""
if TYPE_CHECKING:  # checked with the otel extra installed, as the test extra has it
    _INSTALLED = True
    from opentelemetry import metrics as _metrics
    from opentelemetry import trace as _trace
    from opentelemetry.metrics import _internal as _metrics_internal
else:
    try:
        from opentelemetry import metrics as _metrics
        from opentelemetry import trace as _trace
        from opentelemetry.metrics import _internal as _metrics_internal
    except ImportError:
        _INSTALLED = False
    else:
        _INSTALLED = True

F = TypeVar("F", bound=Callable[..., Any])

SYSTEM: Final = "db.system.name"
KEY: Final = "kvsourcing.aggregate.key"
EVENTS: Final = "kvsourcing.events"
SEQUENCE: Final = "kvsourcing.sequence"
ERROR_TYPE: Final = "error.type"
_DURATION_BOUNDS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_LAG_BOUNDS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def system_name(driver: object) -> str:
    """The ``db.system.name`` of a driver: its ``system_name`` class attribute, else ``other``."""
    return str(getattr(driver, "system_name", "other"))


def _error_type(exc: BaseException) -> str:
    return type(exc).__qualname__


class _Instruments:
    """The tracer and the metric instruments, made once a provider is configured."""

    def __init__(self) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            own_version = version("kvsourcing")
        except PackageNotFoundError:
            own_version = "0+unknown"
        self.tracer = _trace.get_tracer("kvsourcing", own_version)
        meter = _metrics.get_meter("kvsourcing", own_version)
        self.commit_duration = _histogram(meter, "kvsourcing.commit.duration", "Duration of commits", "s")
        self.refresh_duration = _histogram(meter, "kvsourcing.refresh.duration", "Duration of refreshes", "s")
        self.feed_lag = _histogram(
            meter, "kvsourcing.feed.lag", "Seconds from a commit to its delivery by a feed consumer", "s"
        )
        self.events_committed = meter.create_counter(
            "kvsourcing.events.committed", unit="{event}", description="Events written by commits"
        )
        self.concurrency_faults = meter.create_counter(
            "kvsourcing.concurrency_faults",
            unit="{fault}",
            description="Commits refused by a ConcurrencyFault",
        )

    @contextlib.contextmanager
    def _operation(self, name: str, duration: Any, system: str, attributes: dict[str, Any]) -> Iterator[Any]:
        """A CLIENT span and its duration; a failure is recorded on both, and a
        ``ConcurrencyFault`` also counted."""
        attributes[SYSTEM] = system
        start = time.perf_counter()
        with self.tracer.start_as_current_span(
            name, kind=_trace.SpanKind.CLIENT, attributes=attributes
        ) as span:
            try:
                yield span
            except BaseException as exc:
                span.set_attribute(ERROR_TYPE, _error_type(exc))
                duration.record(time.perf_counter() - start, {SYSTEM: system, ERROR_TYPE: _error_type(exc)})
                if isinstance(exc, ConcurrencyFault):
                    self.concurrency_faults.add(1, {SYSTEM: system})
                raise
        duration.record(time.perf_counter() - start, {SYSTEM: system})

    @contextlib.contextmanager
    def commit(self, store: Any, argument: Any) -> Iterator[_Outcome]:
        """``commit_events(writer)``, or ``commit_together(writers)``: one span for the lot,
        naming every key and counting every event."""
        attributes, total = _commit_attributes(argument)
        system = system_name(store.driver)
        with self._operation("kvsourcing.commit", self.commit_duration, system, attributes):
            yield _Outcome()
        if total:
            self.events_committed.add(total, {SYSTEM: system})

    @contextlib.contextmanager
    def refresh(self, store: Any, reader: Any) -> Iterator[_Outcome]:
        before = getattr(reader, "sequence_number", lambda: None)()
        key = getattr(reader, "get_key", lambda: None)()
        attributes: dict[str, Any] = {KEY: key} if isinstance(key, str) else {}
        with self._operation(
            "kvsourcing.refresh", self.refresh_duration, system_name(store.driver), attributes
        ) as span:
            yield _Outcome()
            after = reader.sequence_number()
            if isinstance(before, int) and isinstance(after, int):
                span.set_attributes({SEQUENCE: after, EVENTS: after - before})

    @contextlib.contextmanager
    def deliver(self, consumer: Any, entry: Any) -> Iterator[_Outcome]:
        """One feed entry handed to a consumer's handlers; the outcome is whether they all
        took it (a handler that failed leaves an error status: the entry comes again)."""
        system = system_name(consumer._driver)
        count = len(entry.records)
        attributes = {
            SYSTEM: system,
            KEY: entry.key,
            EVENTS: count,
            SEQUENCE: entry.first + count - 1,
            "kvsourcing.consumer": consumer.name,
        }
        outcome = _Outcome()
        with self.tracer.start_as_current_span(
            "kvsourcing.feed.deliver", kind=_trace.SpanKind.CONSUMER, attributes=attributes
        ) as span:
            yield outcome
            if not outcome.result:
                span.set_attribute(ERROR_TYPE, "HandlerFailed")
                span.set_status(_trace.Status(_trace.StatusCode.ERROR, "a handler failed; will retry"))
        recorded_at = getattr(entry, "recorded_at", None)
        if outcome.result and recorded_at is not None:
            self.feed_lag.record(max(0.0, time.time() - recorded_at), {SYSTEM: system})


def _commit_attributes(argument: Any) -> tuple[dict[str, Any], int]:
    """The span attributes of a commit of one writer or a list of them, and its event count.
    What the store will refuse (a bad key, a writer that is not one) is left to the store,
    inside the span: telemetry never fails an operation in its place."""
    single = hasattr(argument, "get_uncommitted_events")
    if single:
        writers: Sequence[Any] = (argument,)
    elif isinstance(argument, list | tuple):
        writers = argument
    else:
        return {}, 0  # say an iterator: reading it here would leave nothing to commit
    attributes: dict[str, Any] = {}
    total = 0
    keys = []
    try:
        for writer in writers:
            committed, events = writer.get_uncommitted_events()
            total += len(events)
            key = writer.get_key()
            if isinstance(key, str):
                keys.append(key)
            if single:
                attributes[SEQUENCE] = committed + len(events)
    except Exception:
        return {}, 0
    attributes[EVENTS] = total
    if keys:
        attributes[KEY] = keys[0] if single else keys
    return attributes, total


class _Outcome:
    """What the traced call returned, for the context that wraps it."""

    __slots__ = ("result",)

    def __init__(self) -> None:
        self.result: Any = None


def _histogram(meter: Any, name: str, description: str, unit: str) -> Any:
    bounds = _LAG_BOUNDS if name.endswith("lag") else _DURATION_BOUNDS
    try:
        return meter.create_histogram(
            name, unit=unit, description=description, explicit_bucket_boundaries_advisory=list(bounds)
        )
    except TypeError:  # opentelemetry-api before 1.23 takes no advisory boundaries
        return meter.create_histogram(name, unit=unit, description=description)


_live: _Instruments | None = None


def _activate() -> _Instruments:
    """Make the instruments, once: a provider is set (the proxies then delegate to it)."""
    global _live
    if _live is None:
        _live = _Instruments()
    return _live


if _INSTALLED:
    # A provider named by OTEL_PYTHON_TRACER_PROVIDER/OTEL_PYTHON_METER_PROVIDER is loaded
    # on the first call of the public getters: make it now, so that the globals show it.
    _trace.get_tracer_provider()
    _metrics.get_meter_provider()
    if not (hasattr(_trace, "_TRACER_PROVIDER") and hasattr(_metrics_internal, "_METER_PROVIDER")):
        _activate()  # an API without the globals read below: always instrument, through its proxies


def _traced(method: str) -> Callable[[F], F]:
    """A decorator of ``fn(subject, argument)``, a function or a coroutine function, that runs
    it inside ``_Instruments.<method>(subject, argument)`` once a provider is set."""

    def decorate(fn: F) -> F:
        if not _INSTALLED:
            return fn

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def traced_async(subject: Any, argument: Any) -> Any:
                live = _live
                if live is None:
                    if _trace._TRACER_PROVIDER is None and _metrics_internal._METER_PROVIDER is None:
                        return await fn(subject, argument)
                    live = _activate()
                with getattr(live, method)(subject, argument) as outcome:
                    outcome.result = await fn(subject, argument)
                return outcome.result

            return cast(F, traced_async)

        @functools.wraps(fn)
        def traced(subject: Any, argument: Any) -> Any:
            live = _live
            if live is None:
                # No provider set yet? The API's two globals, read directly: its public
                # getters look the environment up on every call, too slow for a commit.
                if _trace._TRACER_PROVIDER is None and _metrics_internal._METER_PROVIDER is None:
                    return fn(subject, argument)
                live = _activate()
            with getattr(live, method)(subject, argument) as outcome:
                outcome.result = fn(subject, argument)
            return outcome.result

        return cast(F, traced)

    return decorate


traced_commit = _traced("commit")
"""Decorates ``commit_events(store, writer)`` or ``commit_together(store, writers)`` (sync or
async): the ``kvsourcing.commit`` span and the commit metrics."""
traced_refresh = _traced("refresh")
"""Decorates ``refresh(store, reader)`` (sync or async): the ``kvsourcing.refresh`` span and its duration."""
traced_delivery = _traced("deliver")
"""Decorates a consumer's ``deliver(consumer, entry) -> bool`` (sync or async):
``kvsourcing.feed.deliver`` and the feed lag."""
