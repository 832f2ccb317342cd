"""``AggregateBase``: the boilerplate of an event-sourced aggregate root."""

from __future__ import annotations

import collections
import copy
import dataclasses
import os
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, ClassVar, TypeVar, cast

from kvsourcing.errors import (
    AggregateNotFoundError,
    DirtyAggregateError,
    HandlerResultError,
    UnknownCommandError,
)
from kvsourcing.keys import validate_key
from kvsourcing.protocols import AsyncEventStore, EventRegistry, EventStore
from kvsourcing.steps import Call, Steps, run_async, run_sync
from kvsourcing.structure import public_attributes, restore_attributes
from kvsourcing.types import (
    HANDLE_METHOD_PREFIX,
    REPLAY_METHOD_PREFIX,
    Command,
    Event,
    EventType,
    StateFetchFunc,
    normalize_type_name,
)
from kvsourcing.wireup import prefixed_methods

T = TypeVar("T")


class AggregateBase:
    """Base class of aggregates: replays events into state, handles commands, commits.

    Subclasses keep their state in public attributes (those not starting with ``_``),
    which is what a snapshot stores, and define ``replay_<name>(self, event: E)`` and
    ``handle_<name>(self, command: C) -> list[event]`` methods that
    ``automatic_wireup()`` finds by their annotations.
    """

    __slots__ = (
        "__dict__",
        "__weakref__",
        "_already_stored",
        "_checked_id",
        "_commit_id",
        "_handlers",
        "_key",
        "_named",
        "_pending",
        "_registry",
        "_replay_by_class",
        "_replayers",
        "_savepoint",
        "_sequence",
        "_state_fn",
        "_store",
    )
    """The base's own attributes live in slots, out of the instance ``__dict__``, which so
    holds only the subclass's: the state that a rollback restores is a copy of that dict."""

    transient_attributes: ClassVar[frozenset[str]] = frozenset()
    """Private attributes that are not state (a counter, a cache): snapshots leave them out
    without complaint. Any other private attribute holding data that a snapshot would miss
    makes the commit that snapshots raise ``EncodingError``."""

    def __init__(self) -> None:
        self._key = ""
        self._registry: EventRegistry | None = None
        self._store: EventStore | AsyncEventStore | None = None
        self._state_fn: StateFetchFunc | None = None
        self._sequence = 0
        self._pending: list[Event] = []
        self._commit_id: str | None = None
        self._named = False
        self._checked_id: str | None = None
        self._already_stored = False
        self._savepoint: tuple[int, dict[str, Any]] | None = None
        self._replayers: dict[str, Callable[[Any], Any]] = {}
        self._replay_by_class: dict[type, Callable[[Any], Any] | None] = {}
        self._handlers: dict[type, Callable[[Any], Any]] = {}

    def initialize(
        self,
        key: str,
        registry: EventRegistry,
        store: EventStore | AsyncEventStore,
        state: StateFetchFunc | None = None,
    ) -> None:
        """Bind the aggregate to its key, event registry and store; ``state`` fetches its state."""
        if not hasattr(self, "_pending"):
            AggregateBase.__init__(self)
        self._key = validate_key(key)
        self._registry = registry
        self._replay_by_class.clear()
        self._store = store
        self._state_fn = state

    def automatic_wireup(self, subject: Any = None) -> None:
        """Register ``subject``'s ``replay_*`` and ``handle_*`` methods (``subject`` defaults to self)."""
        subject = self if subject is None else subject
        for event_cls, method in prefixed_methods(subject, REPLAY_METHOD_PREFIX, 1):
            self.define_replay_method(self._event_type_of(event_cls), method)
        for command_cls, method in prefixed_methods(
            subject, HANDLE_METHOD_PREFIX, 1, skip=frozenset({"handle"})
        ):
            self._handlers[command_cls] = method

    def _event_type_of(self, event_cls: type) -> EventType:
        if self._registry is not None:
            return self._registry.get_event_type(event_cls)[0]
        return EventType(normalize_type_name(event_cls.__qualname__))

    def define_replay_method(self, event_type: str, replay: Callable[[Any], Any]) -> None:
        """Replay events of ``event_type`` with ``replay(event)``."""
        self._replayers[event_type] = replay
        self._replay_by_class.clear()

    def define_command_handler(self, command_cls: type, handler: Callable[[Any], Any]) -> None:
        """Handle commands of ``command_cls`` with ``handler(command) -> list[event]``."""
        self._handlers[command_cls] = handler

    def handled_commands(self) -> dict[str, type]:
        """The command classes this aggregate handles, by type name."""
        return {normalize_type_name(cls.__qualname__): cls for cls in self._handlers}

    def get_key(self) -> str:
        return self._key

    def sequence_number(self) -> int:
        """The sequence of the last event replayed or applied (0 for a new aggregate)."""
        return self._sequence

    def get_event_registry(self) -> EventRegistry:
        if self._registry is None:
            raise RuntimeError("aggregate is not initialized: call initialize(key, registry, store)")
        return self._registry

    def is_dirty(self) -> bool:
        return bool(self._pending)

    def state(self) -> Any:
        """The aggregate's state: what the ``StateFetchFunc`` returns, else the aggregate itself."""
        return self if self._state_fn is None else self._state_fn()

    def get_state(self) -> Any:
        """The state a store snapshots: ``state()``, so a subclass that overrides ``state`` is followed."""
        return self.state()

    def replay_event(self, event: Event) -> None:
        """Apply an already stored event; events with no replay method only bump the sequence."""
        cls = type(event)
        try:
            replay = self._replay_by_class[cls]
        except KeyError:
            replay = self._replay_by_class[cls] = self._replayer_of(cls)
        if replay is not None:
            replay(event)
        self._sequence += 1

    def _replayer_of(self, cls: type) -> Callable[[Any], Any] | None:
        if self._registry is None:
            return self._replayers.get(normalize_type_name(cls.__qualname__))
        event_type, found = self._registry.get_event_type(cls)
        return self._replayers.get(event_type) if found else None

    def restore_snapshot(self, sequence: int, state: Any) -> None:
        """Set the state from a stored snapshot taken at ``sequence``."""
        restore_attributes(self.state(), state)
        self._sequence = sequence

    def apply_event(self, event: Event) -> None:
        """Record a new event and apply it to the state; ``commit()`` stores it."""
        if not self._pending:
            self._already_stored = False  # a new commit: what the last one found is past
            self._save()
            if self._commit_id is None:
                self._commit_id = new_commit_id()
        self.replay_event(event)
        self._pending.append(event)

    def get_commit_id(self) -> str | None:
        """The id of the uncommitted events: kept until they are stored, so a commit
        re-sent after a lost reply is recognised and not written twice."""
        return self._commit_id

    def names_commit(self) -> bool:
        """Whether the caller chose the commit id (``handle(command, commit_id=...)``), so the
        store must find it again later, not only when this very commit is re-sent."""
        return self._named

    def commit_id_to_check(self) -> str | None:
        """The commit id ``handle`` asks the store to look for while it refreshes."""
        return self._checked_id

    def commit_already_stored(self) -> None:
        """Called by the store when this commit's id was found already stored."""
        self._already_stored = True

    def was_already_stored(self) -> bool:
        """Whether the store found the last commit's id already stored, and so wrote nothing."""
        return self._already_stored

    def get_uncommitted_events(self) -> tuple[int, list[Event]]:
        """``(committed sequence, new events)`` for the store to write."""
        return self._sequence - len(self._pending), list(self._pending)

    def commit(self) -> None:
        """Store the uncommitted events; on failure they stay uncommitted, and calling
        ``commit()`` again re-sends them under the same commit id."""
        run_sync(self._commit_steps(), self._sync_store("commit", "acommit"))

    async def acommit(self) -> None:
        """``commit()`` for an aggregate bound to an async store."""
        await run_async(self._commit_steps(), self._async_store("acommit", "commit"))

    def _commit_steps(self) -> Steps[None]:
        if not self._pending:
            return
        self.prepare_commit()
        yield Call("commit_events", (self,))
        self.committed()

    def prepare_commit(self, commit_id: str | None = None) -> None:
        """Ready the uncommitted events for sending; ``commit_id`` names their commit."""
        self._already_stored = False
        if commit_id is not None:
            self._commit_id = commit_id
            self._named = True

    def committed(self) -> None:
        """Forget the events just stored (the store has them) and their commit id."""
        self._pending.clear()
        self._commit_id = None
        self._named = False
        self._savepoint = None

    def refresh(self, *, must_exist: bool = False) -> None:
        """Load the events stored since the aggregate's sequence (from a snapshot when newer).

        ``must_exist``: raise ``AggregateNotFoundError`` when the aggregate has no events,
        for commands that only apply to an aggregate already created.
        """
        run_sync(self._refresh_steps(must_exist), self._sync_store("refresh", "arefresh"))

    async def arefresh(self, *, must_exist: bool = False) -> None:
        """``refresh()`` for an aggregate bound to an async store."""
        await run_async(self._refresh_steps(must_exist), self._async_store("arefresh", "refresh"))

    def _refresh_steps(self, must_exist: bool) -> Steps[None]:
        if self._pending:
            raise DirtyAggregateError(
                f"aggregate {self._key!r} has {len(self._pending)} uncommitted event(s): "
                "commit them before refreshing"
            )
        yield Call("refresh", (self,))
        if must_exist and self._sequence == 0:
            raise AggregateNotFoundError(
                f"{type(self).__name__} {self._key!r} has no events: it was never created "
                "(or its key is wrong)"
            )

    def get_store(self) -> EventStore | AsyncEventStore:
        """The store the aggregate is bound to."""
        return self._require_store()

    def _require_store(self) -> EventStore | AsyncEventStore:
        if self._store is None:
            raise RuntimeError("aggregate is not initialized: call initialize(key, registry, store)")
        return self._store

    def _find_handler(self, command: Command) -> Callable[[Any], Any]:
        for cls in type(command).__mro__:
            handler = self._handlers.get(cls)
            if handler is not None:
                return handler
        known = ", ".join(sorted(c.__name__ for c in self._handlers)) or "none"
        raise UnknownCommandError(
            f"{type(self).__name__} {self._key!r} has no handler for {type(command).__name__} "
            f"(handles: {known}); define handle_<name>(self, command: {type(command).__name__})"
        )

    def _sync_store(self, called: str, instead: str) -> EventStore:
        store = self._require_store()
        if getattr(store, "is_async", False):
            raise TypeError(
                f"{type(self).__name__} {self._key!r} is bound to an async store: "
                f"await {instead}() instead of calling {called}()"
            )
        return cast(EventStore, store)

    def _async_store(self, called: str, instead: str) -> AsyncEventStore:
        store = self._require_store()
        if not getattr(store, "is_async", False):
            raise TypeError(
                f"{type(self).__name__} {self._key!r} is bound to a sync store: "
                f"call {instead}() instead of awaiting {called}()"
            )
        return cast(AsyncEventStore, store)

    def handle(
        self, command: Command, commit_id: str | None = None, *, must_exist: bool = False
    ) -> list[Event]:
        """Refresh, run the command's handler, apply the events it returns, commit them.

        Returns the events committed. ``commit_id`` (by default a new one) names the commit:
        when a commit of that id is already stored for this aggregate, whatever was
        committed after it, ``handle`` refreshes, returns ``[]`` and neither runs the handler
        nor writes anything, so a command re-sent after a timeout or a lost reply is a
        no-op. If anything fails, the aggregate is rolled back to its state before the
        command (private attributes included), so the same instance can run the command
        again (as ``retry`` does). ``must_exist``: see ``refresh``.
        """
        steps = self._handle_steps(command, commit_id, must_exist)
        return run_sync(steps, self._sync_store("handle", "ahandle"))

    async def ahandle(
        self, command: Command, commit_id: str | None = None, *, must_exist: bool = False
    ) -> list[Event]:
        """``handle()`` for an aggregate bound to an async store."""
        steps = self._handle_steps(command, commit_id, must_exist)
        return await run_async(steps, self._async_store("ahandle", "handle"))

    def _handle_steps(self, command: Command, commit_id: str | None, must_exist: bool) -> Steps[list[Event]]:
        handler = self._find_handler(command)
        self._already_stored = False
        self._checked_id = commit_id
        try:
            yield from self._refresh_steps(must_exist)
        finally:
            self._checked_id = None
        if self._already_stored:
            return []

        def body() -> Steps[list[Event]]:
            events = handler(command)
            if not isinstance(events, (list, tuple)):
                raise HandlerResultError(
                    f"handler for {type(command).__name__} returned {type(events).__name__}; "
                    "it must return a list of events (an empty list for none)"
                )
            self._commit_id = commit_id
            self._named = commit_id is not None
            for event in events:
                self.apply_event(event)
            yield from self._commit_steps()
            return [] if self._already_stored else list(events)

        return (yield from self._atomically(body()))

    def run(self, callback: Callable[[], Any]) -> Any:
        """Refresh, run ``callback`` (which applies events), commit; rolled back on failure."""
        store = self._sync_store("run", "ahandle")

        def body() -> Steps[Any]:
            result = callback()
            yield from self._commit_steps()
            return result

        def steps() -> Steps[Any]:
            yield from self._refresh_steps(False)
            return (yield from self._atomically(body()))

        return run_sync(steps(), store)

    def _atomically(self, body: Steps[T]) -> Steps[T]:
        """Run ``body``; roll back to the state before it if it fails, or if its commit was
        found already stored (then what is stored, not what ``body`` applied, is the truth)."""
        self._savepoint = None
        self._save()
        try:
            result = yield from body
        except BaseException:
            self.rollback()
            raise
        if self._already_stored:
            self.rollback()
        self._savepoint = None
        return result

    def _save(self) -> None:
        """Keep a copy of the whole state to roll back to, unless one is kept already."""
        if self._savepoint is None:
            self._savepoint = (self._sequence, _saved(_state_vars(self.state())))

    def rollback(self) -> None:
        """Drop the uncommitted events and restore the state from before them (from before
        the command, inside ``handle``), private attributes included."""
        savepoint, self._savepoint = self._savepoint, None
        self._pending.clear()
        self._commit_id = None
        self._named = False
        if savepoint is None:
            return
        self._sequence, state = savepoint
        target = self.state()
        if isinstance(target, MutableMapping):
            target.clear()
            target.update(state)
            return
        for name in set(_state_vars(target)) - set(state):
            delattr(target, name)
        for name, value in state.items():
            object.__setattr__(target, name, value)

    def private_state(self) -> list[str]:
        """Private attributes holding data that a snapshot of the public ones would miss,
        when the aggregate itself is its state: every one when no public attribute holds
        state (the snapshot would be empty), else those behind a property of the same name
        (``_balance`` read through ``balance``), less ``transient_attributes``. The store
        refuses to snapshot them."""
        if self._state_fn is not None:
            return []
        own = vars(self)
        empty = not any(not name.startswith("_") for name in own)
        cls = type(self)
        return [
            name
            for name, value in own.items()
            if name.startswith("_") and not name.startswith("__")
            and name not in cls.transient_attributes and _is_plain_data(value)
            and (empty or isinstance(getattr(cls, name.lstrip("_"), None), property))
        ]  # fmt: skip


_ID_BATCH = 64
_ids: collections.deque[str] = collections.deque()
os.register_at_fork(after_in_child=_ids.clear)  # a child must not reuse its parent's ids


def new_commit_id() -> str:
    """A random commit id of 128 bits (32 hex digits), from ``os.urandom``. The bytes are
    drawn for ``_ID_BATCH`` ids at a time: a system call per commit would cost more than
    the rest of a commit's bookkeeping in memory. (``deque.popleft`` is thread-safe.)"""
    try:
        return _ids.popleft()
    except IndexError:
        pool = os.urandom(16 * _ID_BATCH).hex()
        _ids.extend([pool[start : start + 32] for start in range(0, len(pool), 32)])
        return _ids.popleft()


_PLAIN = (int, float, str, bytes, bool, list, dict, set, frozenset, tuple)


def _is_plain_data(value: Any) -> bool:
    """Whether ``value`` looks like state (data) rather than a resource (a lock, a client)."""
    return isinstance(value, _PLAIN) or (dataclasses.is_dataclass(value) and not isinstance(value, type))


def _state_vars(target: Any) -> dict[str, Any]:
    """What a rollback restores: every attribute of the state (``AggregateBase``'s own are
    in its slots, not among them)."""
    if isinstance(target, Mapping) or not hasattr(target, "__dict__"):
        return public_attributes(target)  # a dict, or a dataclass with slots: its fields
    return dict(vars(target))


_IMMUTABLE = frozenset({int, float, str, bytes, bool, type(None), complex})


def _saved(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` (a new dict, from ``_state_vars``) with its values deep-copied in place, to
    roll back to (one memo, so shared objects stay shared).

    A public attribute that cannot be copied raises ``TypeError`` naming it; a private one
    (a lock, a client: a resource, not state) is kept as it is.
    """
    memo: dict[int, Any] = {}
    for name, value in state.items():
        if type(value) in _IMMUTABLE:
            continue  # nothing to copy (and deepcopy would cost a call each)
        try:
            state[name] = copy.deepcopy(value, memo)
        except (TypeError, copy.Error) as exc:  # what deepcopy raises for a lock or a socket
            if name.startswith("_"):
                continue
            raise TypeError(
                f"cannot save attribute {name!r} ({type(value).__name__}) to roll back a failed command: "
                f"{exc}; state is copied before each command, so keep locks, clients and other resources "
                "in private attributes (with a leading underscore)"
            ) from exc
    return state
