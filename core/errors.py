"""The library's exceptions: one base class, faults included, each message saying what to do."""

from __future__ import annotations


class KvSourcingError(Exception):
    """Base class of every exception kvsourcing raises on its own account."""


class ConcurrencyFault(KvSourcingError):
    """Another writer committed first: the events at ``event_sequence`` exist already.

    Reload the aggregate and run the command again (``retry`` does this).
    """

    def __init__(self, aggregate_key: str, event_sequence: int) -> None:
        super().__init__(aggregate_key, event_sequence)
        self.aggregate_key = aggregate_key
        self.event_sequence = event_sequence

    def __str__(self) -> str:
        return f"ConcurrencyFault: {self.aggregate_key} at {self.event_sequence}"


class DomainFault(KvSourcingError):
    """A command is invalid in the domain (for example, overdrawing an account)."""

    def __init__(self, aggregate_key: str, fault_code: str) -> None:
        super().__init__(aggregate_key, fault_code)
        self.aggregate_key = aggregate_key
        self.fault_code = fault_code

    def __str__(self) -> str:
        return f"DomainFault: {self.fault_code} on {self.aggregate_key}"


class UnknownEventTypeError(KvSourcingError, TypeError):
    """A commit holds an event whose type the aggregate's registry does not know."""


class UnknownCommandError(KvSourcingError, TypeError):
    """A command reached an aggregate that has no handler for its type."""


class HandlerResultError(KvSourcingError, TypeError):
    """A command handler returned something other than a list of events."""


class WireupError(KvSourcingError, TypeError):
    """A ``replay_*``/``handle_*`` method has the wired shape but no annotation on the
    parameter that names the class it takes, so it cannot be wired."""


class RegistrationError(KvSourcingError, ValueError):
    """A class cannot be registered: its type name is taken by another class of the
    registry, or its fields hold types the store's default codec cannot encode."""


class TestStoreError(KvSourcingError):
    """A ``TestStore`` was asked to refresh in a way its ``when`` set-up does not allow, as
    Go's ``TestStore.Refresh`` refuses it."""

    __test__ = False


class DirtyAggregateError(KvSourcingError):
    """An aggregate with uncommitted events was asked to refresh."""


class SequenceGapError(KvSourcingError):
    """A commit expected the aggregate at sequence S, but S does not exist in the store."""


class EncodingError(KvSourcingError, ValueError):
    """A value could not be encoded or decoded by the store's codec."""


class InvalidKeyError(KvSourcingError, ValueError):
    """An aggregate key is empty, not a ``str``, or holds control characters."""


class ConfigurationError(KvSourcingError, ValueError):
    """A store URL or option is wrong."""


class TableNotFoundError(ConfigurationError):
    """The store's table does not exist."""


class StoreUnavailableError(KvSourcingError, ConnectionError):
    """The store's server could not be reached, or refused our credentials."""


class CrossPartitionError(KvSourcingError):
    """Aggregates committed together that the backend cannot write in one atomic operation
    (a Redis Cluster, keys in different slots); nothing was written."""


class AggregateNotFoundError(KvSourcingError, LookupError):
    """An aggregate that must exist has no events."""


class CommitTooLargeError(KvSourcingError):
    """A commit exceeds what the backend can write in one atomic operation."""


def new_concurrency_fault(aggregate_key: str, event_sequence: int) -> ConcurrencyFault:
    """Return (not raise) a ``ConcurrencyFault``, as Go's ``NewConcurrencyFault``."""
    return ConcurrencyFault(aggregate_key, event_sequence)


def new_domain_fault(aggregate_key: str, fault_code: str) -> DomainFault:
    """Return (not raise) a ``DomainFault``, as Go's ``NewDomainFault``."""
    return DomainFault(aggregate_key, fault_code)


def is_concurrency_fault(err: BaseException | None) -> tuple[bool, ConcurrencyFault | None]:
    """``(True, fault)`` when ``err`` is a ``ConcurrencyFault``, else ``(False, None)``."""
    if isinstance(err, ConcurrencyFault):
        return True, err
    return False, None


def is_domain_fault(err: BaseException | None) -> tuple[bool, DomainFault | None]:
    """``(True, fault)`` when ``err`` is a ``DomainFault``, else ``(False, None)``."""
    if isinstance(err, DomainFault):
        return True, err
    return False, None
