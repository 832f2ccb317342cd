"""``commit_together``: several aggregates' new events in one atomic write."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kvsourcing.aggregate import AggregateBase
from kvsourcing.errors import StoreUnavailableError
from kvsourcing.keys import validate_commit_id
from kvsourcing.steps import Call, Steps, run_sync


def commit_together(*aggregates: AggregateBase, commit_id: str | None = None) -> None:
    """Write the uncommitted events of ``aggregates`` (all bound to one store) atomically.

    All of them are stored or none: a clash on any raises that aggregate's
    ``ConcurrencyFault``, writes nothing and rolls every aggregate back to its state before
    its uncommitted events, so ``retry`` can run the whole unit again. ``commit_id`` names
    the commit of each aggregate (ids are per aggregate, so one id serves them all): sent
    again after a lost reply, it is found stored and nothing is written twice. After
    ``StoreUnavailableError`` the events stay uncommitted, and calling ``commit_together``
    again re-sends them under the same ids.
    """
    steps, store = together_steps(aggregates, commit_id)
    if steps is not None:
        run_sync(steps, store)


def together_steps(
    aggregates: Sequence[AggregateBase], commit_id: str | None
) -> tuple[Steps[None] | None, Any]:
    """The steps of ``commit_together`` and the store to run them on (``None``: nothing to do)."""
    pending = [aggregate for aggregate in aggregates if aggregate.is_dirty()]
    if not pending:
        return None, None
    store = _one_store(pending)
    if commit_id is not None:
        validate_commit_id(commit_id)
    return _steps(pending, commit_id), store


def _steps(pending: list[AggregateBase], commit_id: str | None) -> Steps[None]:
    for aggregate in pending:
        aggregate.prepare_commit(commit_id)
    try:
        yield Call("commit_together", (pending,))
    except StoreUnavailableError:
        raise
    except BaseException:
        for aggregate in pending:
            aggregate.rollback()
        raise
    for aggregate in pending:
        if aggregate.was_already_stored():
            aggregate.rollback()
        else:
            aggregate.committed()


def _one_store(aggregates: list[AggregateBase]) -> Any:
    """The store every aggregate is bound to, if it can commit several together."""
    store = aggregates[0].get_store()
    if any(aggregate.get_store() is not store for aggregate in aggregates):
        raise ValueError("commit_together needs aggregates of one store; these are bound to different stores")
    if not callable(getattr(store, "commit_together", None)):
        raise TypeError(
            f"{type(store).__name__} cannot commit several aggregates atomically: use a "
            "kvsourcing store (memory, Redis, DynamoDB)"
        )
    keys = [aggregate.get_key() for aggregate in aggregates]
    if len(set(keys)) != len(keys):
        raise ValueError(f"commit_together got one aggregate key twice: {sorted(keys)}")
    return store
