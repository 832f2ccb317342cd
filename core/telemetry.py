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
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from typing import Any, Final, TypeVar

from kvsourcing.errors import ConcurrencyFault

try:
    from opentelemetry import metrics as _metrics
    from opentelemetry import trace as _trace
except ImportError:  # the otel extra is not installed: the decorators change nothing
    _trace = None  # type: ignore[assignment]

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
    def _operation(
        self, name: str, duration: Any, system: str, key: object, attributes: dict[str, str | int]
    ) -> Iterator[Any]:
        """A CLIENT span and its duration; a failure is recorded on both, and a
        ``ConcurrencyFault`` also counted."""
        attributes[SYSTEM] = system
        if isinstance(key, str):  # an invalid key fails inside, on the span
            attributes[KEY] = key
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

    def commit(self, fn: Callable[[Any, Any], None], store: Any, writer: Any) -> None:
        committed, events = writer.get_uncommitted_events()
        system = system_name(store.driver)
        sequence = committed + len(events)
        attributes: dict[str, str | int] = {EVENTS: len(events), SEQUENCE: sequence}
        with self._operation("kvsourcing.commit", self.commit_duration, system, writer.get_key(), attributes):
            fn(store, writer)
        if events:
            self.events_committed.add(len(events), {SYSTEM: system})

    def refresh(self, fn: Callable[[Any, Any], None], store: Any, reader: Any) -> None:
        before = reader.sequence_number()
        system = system_name(store.driver)
        key = reader.get_key()
        with self._operation("kvsourcing.refresh", self.refresh_duration, system, key, {}) as span:
            fn(store, reader)
            after = reader.sequence_number()
            span.set_attributes({SEQUENCE: after, EVENTS: after - before})

    def deliver(self, fn: Callable[[Any, Any], bool], consumer: Any, entry: Any) -> bool:
        system = system_name(consumer._driver)
        count = len(entry.records)
        attributes = {
            SYSTEM: system,
            KEY: entry.key,
            EVENTS: count,
            SEQUENCE: entry.first + count - 1,
            "kvsourcing.consumer": consumer.name,
        }
        with self.tracer.start_as_current_span(
            "kvsourcing.feed.deliver", kind=_trace.SpanKind.CONSUMER, attributes=attributes
        ) as span:
            delivered = fn(consumer, entry)
            if not delivered:
                span.set_attribute(ERROR_TYPE, "HandlerFailed")
                span.set_status(_trace.Status(_trace.StatusCode.ERROR, "a handler failed; will retry"))
        recorded_at = getattr(entry, "recorded_at", None)
        if delivered and recorded_at is not None:
            self.feed_lag.record(max(0.0, time.time() - recorded_at), {SYSTEM: system})
        return delivered


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


if _trace is not None:
    from opentelemetry.metrics import _internal as _metrics_internal

    # A provider named by OTEL_PYTHON_TRACER_PROVIDER/OTEL_PYTHON_METER_PROVIDER is loaded
    # on the first call of the public getters: make it now, so that the globals show it.
    _trace.get_tracer_provider()
    _metrics.get_meter_provider()
    if not (hasattr(_trace, "_TRACER_PROVIDER") and hasattr(_metrics_internal, "_METER_PROVIDER")):
        _activate()  # an API without the globals read below: always instrument, through its proxies


def _traced(method: str) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        if _trace is None:
            return fn

        @functools.wraps(fn)
        def traced(subject: Any, argument: Any) -> Any:
            instruments = _live
            if instruments is None:
                # No provider set yet? The API's two globals, read directly: its public
                # getters look the environment up on every call, too slow for a commit.
                if _trace._TRACER_PROVIDER is None and _metrics_internal._METER_PROVIDER is None:
                    return fn(subject, argument)
                instruments = _activate()
            return getattr(instruments, method)(fn, subject, argument)

        return traced  # type: ignore[return-value]

    return decorate


traced_commit = _traced("commit")
"""Decorates ``commit_events(store, writer)``: the ``kvsourcing.commit`` span and metrics."""
traced_refresh = _traced("refresh")
"""Decorates ``refresh(store, reader)``: the ``kvsourcing.refresh`` span and its duration."""
traced_delivery = _traced("deliver")
"""Decorates a consumer's ``deliver(consumer, entry)``: ``kvsourcing.feed.deliver`` and the feed lag."""
