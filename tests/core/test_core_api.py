"""The public names of API.md, the faults and errors, constants, ``normalize_type_name`` and ``retry``."""

from __future__ import annotations

import inspect
import pickle
import typing

import pytest

import kvsourcing
from kvsourcing import (
    AggregateNotFoundError,
    CommitTooLargeError,
    ConcurrencyFault,
    ConfigurationError,
    CrossPartitionError,
    DirtyAggregateError,
    DomainFault,
    EncodingError,
    HandlerResultError,
    InvalidKeyError,
    KvSourcingError,
    RegistrationError,
    SequenceGapError,
    StoreUnavailableError,
    TableNotFoundError,
    TestStoreError,
    UnknownCommandError,
    UnknownEventTypeError,
    WireupError,
    is_concurrency_fault,
    is_domain_fault,
    new_concurrency_fault,
    new_domain_fault,
    normalize_type_name,
    retry,
)

API_NAMES = [
    "HANDLE_METHOD_PREFIX",
    "REPLAY_METHOD_PREFIX",
    "EVENT_HANDLE_METHOD_PREFIX",
    "default_test_store_filter",
    "new_concurrency_fault",
    "new_domain_fault",
    "normalize_type_name",
    "retry",
    "Adapter",
    "AdapterPositional",
    "AdapterWithEvents",
    "StoreLoaderAdapter",
    "StoreWriterAdapter",
    "Aggregate",
    "AggregateBase",
    "Command",
    "Event",
    "CommandType",
    "EventType",
    "StateFetchFunc",
    "NextHandler",
    "CommitMiddleware",
    "RefreshMiddleware",
    "CloseMiddleware",
    "MiddlewareFactory",
    "CommandHandleFunc",
    "EventDetector",
    "EventFactory",
    "CommandHandler",
    "EventConsumer",
    "EventHandler",
    "EventPublisher",
    "CommandRegistry",
    "StandardCommandRegistry",
    "new_standard_command_registry",
    "EventRegistry",
    "StandardEventRegistry",
    "new_standard_event_registry",
    "EventDefinition",
    "ConcurrencyFault",
    "is_concurrency_fault",
    "DomainFault",
    "is_domain_fault",
    "EventHandlerBase",
    "EventStore",
    "EventStoreWithMiddleware",
    "new_middleware_wrapper",
    "PublishedEvent",
    "TestStore",
    "new_test_store",
    "TestStoreFilter",
    "test_store_failure_filter",
    "TestStoreHistoryItem",
    "open_store",
    "KvSourcingError",
    "UnknownEventTypeError",
    "DirtyAggregateError",
    "SequenceGapError",
    "UnknownCommandError",
    "EncodingError",
    "ConfigurationError",
    "StoreUnavailableError",
    "CommitTooLargeError",
    "InvalidKeyError",
    "TableNotFoundError",
]

PROTOCOLS = [
    "Adapter",
    "AdapterPositional",
    "AdapterWithEvents",
    "StoreLoaderAdapter",
    "StoreWriterAdapter",
    "Aggregate",
    "CommandHandler",
    "EventConsumer",
    "EventHandler",
    "EventPublisher",
    "CommandRegistry",
    "EventRegistry",
    "EventStore",
]

ERRORS = [
    ConcurrencyFault,
    DomainFault,
    UnknownEventTypeError,
    DirtyAggregateError,
    SequenceGapError,
    UnknownCommandError,
    HandlerResultError,
    EncodingError,
    ConfigurationError,
    StoreUnavailableError,
    CommitTooLargeError,
    InvalidKeyError,
    TableNotFoundError,
    CrossPartitionError,
    AggregateNotFoundError,
    RegistrationError,
    TestStoreError,
    WireupError,
]


@pytest.mark.parametrize("name", API_NAMES)
def test_every_api_name_imports_from_kvsourcing_and_is_exported(name: str) -> None:
    assert getattr(kvsourcing, name) is not None
    assert name in kvsourcing.__all__


def test_submodule_names_of_the_api_import() -> None:
    from kvsourcing.codecs import JsonCodec, MsgpackCodec
    from kvsourcing.stores.keyvalue import KeyedEvent, new_store
    from kvsourcing.stores.memory import new_store as new_memory_store
    from kvsourcing.testing import AggregateScenario, StoreSuite, run_json

    assert all(callable(x) for x in (JsonCodec, MsgpackCodec, new_store, new_memory_store, run_json))
    assert KeyedEvent("k", 1, "T", {}).sequence == 1
    assert inspect.isclass(StoreSuite) and inspect.isclass(AggregateScenario)


@pytest.mark.parametrize("name", PROTOCOLS)
def test_interfaces_are_typing_protocols(name: str) -> None:
    assert getattr(getattr(kvsourcing, name), "_is_protocol", False)


def test_type_names_are_newtypes_of_str() -> None:
    assert kvsourcing.EventType.__supertype__ is str
    assert kvsourcing.CommandType.__supertype__ is str
    assert kvsourcing.EventType("X") == "X"


def test_constants() -> None:
    assert kvsourcing.HANDLE_METHOD_PREFIX == "handle"
    assert kvsourcing.REPLAY_METHOD_PREFIX == "replay"
    assert kvsourcing.EVENT_HANDLE_METHOD_PREFIX == "handle"


@pytest.mark.parametrize(
    ("name", "expected"),
    [("pkg.mod.Foo", "Foo"), ("Foo", "Foo"), ("a.Outer.Inner", "Inner"), ("*main.Foo", "Foo"), ("", "")],
)
def test_normalize_type_name(name: str, expected: str) -> None:
    assert normalize_type_name(name) == expected


# faults


def test_concurrency_fault_attributes_and_str() -> None:
    fault = new_concurrency_fault("acct-1", 7)
    assert isinstance(fault, ConcurrencyFault)
    assert (fault.aggregate_key, fault.event_sequence) == ("acct-1", 7)
    assert str(fault) == "ConcurrencyFault: acct-1 at 7"


def test_domain_fault_attributes_and_str() -> None:
    fault = new_domain_fault("acct-1", "insufficient-funds")
    assert isinstance(fault, DomainFault)
    assert (fault.aggregate_key, fault.fault_code) == ("acct-1", "insufficient-funds")
    assert str(fault) == "DomainFault: insufficient-funds on acct-1"


def test_new_fault_functions_return_rather_than_raise() -> None:
    assert isinstance(new_concurrency_fault("k", 1), BaseException)
    assert isinstance(new_domain_fault("k", "c"), BaseException)


def test_is_concurrency_fault() -> None:
    fault = ConcurrencyFault("k", 2)
    assert is_concurrency_fault(fault) == (True, fault)
    assert is_concurrency_fault(DomainFault("k", "c")) == (False, None)
    assert is_concurrency_fault(ValueError("x")) == (False, None)
    assert is_concurrency_fault(None) == (False, None)


def test_is_domain_fault() -> None:
    fault = DomainFault("k", "c")
    ok, found = is_domain_fault(fault)
    assert ok is True and found is fault
    assert is_domain_fault(ConcurrencyFault("k", 1)) == (False, None)
    assert is_domain_fault(RuntimeError()) == (False, None)
    assert is_domain_fault(None) == (False, None)


@pytest.mark.parametrize("cls", ERRORS)
def test_every_library_exception_derives_from_kvsourcing_error(cls: type) -> None:
    assert issubclass(cls, KvSourcingError)
    assert issubclass(KvSourcingError, Exception)


def test_every_exception_class_in_errors_module_is_listed() -> None:
    from kvsourcing import errors

    defined = {
        obj
        for obj in vars(errors).values()
        if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == errors.__name__
    }
    assert defined == {*ERRORS, KvSourcingError}


def test_table_not_found_is_a_configuration_error() -> None:
    assert issubclass(TableNotFoundError, ConfigurationError)
    assert not issubclass(SequenceGapError, ConcurrencyFault)


@pytest.mark.parametrize(
    "err",
    [ConcurrencyFault("key-x", 12), DomainFault("key-y", "no-way")],
    ids=["concurrency", "domain"],
)
def test_faults_pickle_round_trip(err: KvSourcingError) -> None:
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert str(back) == str(err)
    assert vars(back) == vars(err)


@pytest.mark.parametrize("cls", [c for c in ERRORS if c not in (ConcurrencyFault, DomainFault)])
def test_other_errors_pickle_round_trip(cls: type) -> None:
    back = pickle.loads(pickle.dumps(cls("what went wrong")))
    assert type(back) is cls and str(back) == "what went wrong"


# retry


def test_retry_returns_the_body_result_first_time() -> None:
    calls = []

    def body() -> str:
        calls.append(1)
        return "done"

    assert retry(3, body) == "done"
    assert len(calls) == 1


def test_retry_runs_again_after_concurrency_faults() -> None:
    calls = []

    def body() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise ConcurrencyFault("k", len(calls))
        return 42

    assert retry(3, body) == 42
    assert len(calls) == 3


def test_retry_stops_after_limit_reraising_the_last_fault() -> None:
    calls = []

    def body() -> None:
        calls.append(1)
        raise ConcurrencyFault("k", len(calls))

    with pytest.raises(ConcurrencyFault) as caught:
        retry(4, body)
    assert len(calls) == 4
    assert caught.value.event_sequence == 4


@pytest.mark.parametrize("exc", [DomainFault("k", "c"), SequenceGapError("gap"), KeyError("x")])
def test_retry_propagates_other_exceptions_after_one_call(exc: Exception) -> None:
    calls = []

    def body() -> None:
        calls.append(1)
        raise exc

    with pytest.raises(type(exc)) as caught:
        retry(5, body)
    assert caught.value is exc
    assert len(calls) == 1


@pytest.mark.parametrize("limit", [0, -1])
def test_retry_rejects_a_limit_below_one(limit: int) -> None:
    with pytest.raises(ValueError, match=str(limit)):
        retry(limit, lambda: None)


@pytest.mark.parametrize("limit", [1.0, "3", None, True])
def test_retry_rejects_a_non_int_limit(limit: typing.Any) -> None:
    with pytest.raises(TypeError):
        retry(limit, lambda: None)
