"""A bank on ``kvsourcing.aio``: open, deposit, withdraw and transfer over HTTP.

Run it with ``KVSOURCING_STORE=redis://localhost:6379/0 uvicorn examples.fastapi_bank.app:app``
(after ``pip install 'kvsourcing[redis,example]'``). Every write takes an optional
``request_id``: a client that lost a reply sends the request again with the same id, and
the money moves once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

from kvsourcing import AggregateBase, AggregateNotFoundError, DomainFault, StandardEventRegistry, aio, backoff

events = StandardEventRegistry("bank")

RETRIES = 100
BACKOFF = backoff(base=0.001, cap=0.05)
"""Requests on one account race; each runs again on a lost race, after a jittered wait."""


@events.register_event
@dataclass
class Opened:
    owner: str


@events.register_event
@dataclass
class Deposited:
    amount: int


@events.register_event
@dataclass
class Withdrawn:
    amount: int


@dataclass
class Open:
    owner: str


@dataclass
class Deposit:
    amount: int


@dataclass
class Withdraw:
    amount: int


class Account(AggregateBase):
    """A bank account; the domain methods are plain functions, the I/O is awaited."""

    def __init__(self, key: str, store: Any) -> None:
        super().__init__()
        self.owner = ""
        self.balance = 0
        self.initialize(key, events, store)
        self.automatic_wireup()

    def replay_opened(self, event: Opened) -> None:
        self.owner = event.owner

    def replay_deposited(self, event: Deposited) -> None:
        self.balance += event.amount

    def replay_withdrawn(self, event: Withdrawn) -> None:
        self.balance -= event.amount

    def handle_open(self, command: Open) -> list[Any]:
        if self.sequence_number():
            raise DomainFault(self.get_key(), "already-open")
        return [Opened(command.owner)]

    def handle_deposit(self, command: Deposit) -> list[Any]:
        return [Deposited(command.amount)]

    def handle_withdraw(self, command: Withdraw) -> list[Any]:
        if command.amount > self.balance:
            raise DomainFault(self.get_key(), "insufficient-funds")
        return [Withdrawn(command.amount)]


class Opening(BaseModel):
    owner: str
    request_id: str | None = None


class Movement(BaseModel):
    amount: int = Field(gt=0)
    request_id: str | None = None


class Transfer(BaseModel):
    source: str
    target: str
    amount: int = Field(gt=0)
    request_id: str | None = None


def create_app(url: str | None = None, **options: Any) -> FastAPI:
    """The bank's app on the store ``url`` names (``KVSOURCING_STORE`` when ``None``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with aio.open_store(url, **options) as store:
            app.state.store = store
            yield

    app = FastAPI(title="kvsourcing bank", lifespan=lifespan)

    def account(request: Request, key: str) -> Account:
        return Account(key, request.app.state.store)

    async def run(
        request: Request, key: str, command: Any, request_id: str | None, *, must_exist: bool
    ) -> Any:
        try:
            acct = account(request, key)
            stored = await aio.retry(
                RETRIES,
                lambda: acct.ahandle(command, commit_id=request_id, must_exist=must_exist),
                backoff=BACKOFF,
            )
        except AggregateNotFoundError as exc:
            raise HTTPException(404, str(exc)) from exc
        except DomainFault as exc:
            raise HTTPException(409, exc.fault_code) from exc
        return {"key": key, "balance": acct.balance, "applied": bool(stored)}

    @app.post("/accounts/{key}")
    async def open_account(request: Request, key: str, body: Opening) -> Any:
        return await run(request, key, Open(body.owner), body.request_id, must_exist=False)

    @app.post("/accounts/{key}/deposits")
    async def deposit(request: Request, key: str, body: Movement) -> Any:
        return await run(request, key, Deposit(body.amount), body.request_id, must_exist=True)

    @app.post("/accounts/{key}/withdrawals")
    async def withdraw(request: Request, key: str, body: Movement) -> Any:
        return await run(request, key, Withdraw(body.amount), body.request_id, must_exist=True)

    @app.get("/accounts/{key}")
    async def balance(request: Request, key: str) -> Any:
        acct = account(request, key)
        try:
            await acct.arefresh(must_exist=True)
        except AggregateNotFoundError as exc:
            raise HTTPException(404, str(exc)) from exc
        return {"key": key, "owner": acct.owner, "balance": acct.balance}

    @app.post("/transfers")
    async def transfer(request: Request, body: Transfer) -> Any:
        if body.source == body.target:
            raise HTTPException(422, "a transfer needs two accounts")

        async def attempt() -> bool:
            debit, credit = account(request, body.source), account(request, body.target)
            await debit.arefresh(must_exist=True)
            await credit.arefresh(must_exist=True)
            if debit.balance < body.amount:
                raise HTTPException(409, "insufficient-funds")
            debit.apply_event(Withdrawn(body.amount))
            credit.apply_event(Deposited(body.amount))
            await aio.commit_together(debit, credit, commit_id=body.request_id)
            return not debit.was_already_stored()

        try:
            applied = await aio.retry(RETRIES, attempt, backoff=BACKOFF)
        except AggregateNotFoundError as exc:
            raise HTTPException(404, str(exc)) from exc
        return {"source": body.source, "target": body.target, "amount": body.amount, "applied": applied}

    return app


app = create_app()
