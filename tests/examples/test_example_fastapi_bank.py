"""The FastAPI bank example, driven through httpx's ASGI transport with 200 concurrent
requests: no request lost, money conserved, re-sent requests applied once."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from examples.fastapi_bank.app import create_app  # noqa: E402

ACCOUNTS = [f"acct-{n}{{bank}}" for n in range(10)]


async def _exercise(url: str, **options: Any) -> None:
    app = create_app(url, **options)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bank") as client:
            for key in ACCOUNTS:
                assert (await client.post(f"/accounts/{key}", json={"owner": key})).status_code == 200
                reply = await client.post(f"/accounts/{key}/deposits", json={"amount": 1_000})
                assert reply.json()["balance"] == 1_000
            rng = random.Random(7)
            requests = []
            for n in range(200):
                kind = rng.choice(["transfer", "deposit", "withdrawal"])
                key, other = rng.sample(ACCOUNTS, 2)
                amount = rng.randint(1, 400)
                if kind == "transfer":
                    body = {"source": key, "target": other, "amount": amount, "request_id": f"r-{n}"}
                    requests.append((kind, "/transfers", body))
                else:
                    body = {"amount": amount, "request_id": f"r-{n}"}
                    requests.append((kind, f"/accounts/{key}/{kind}s", body))
            resent = requests[:20]

            async def send(request: tuple[str, str, dict[str, Any]]) -> tuple[str, dict[str, Any], Any]:
                kind, path, body = request
                reply = await client.post(path, json=body)
                assert reply.status_code in (200, 409), reply.text
                return kind, body, reply.json() if reply.status_code == 200 else None

            results = await asyncio.gather(*(send(r) for r in requests + resent))
            expected = 1_000 * len(ACCOUNTS)
            applied = 0
            for kind, body, result in results:
                if result is None or not result["applied"]:
                    continue
                applied += 1
                if kind == "deposit":
                    expected += body["amount"]
                elif kind == "withdrawal":
                    expected -= body["amount"]
            assert applied <= 200, "a re-sent request was applied twice"
            balances = [(await client.get(f"/accounts/{key}")).json()["balance"] for key in ACCOUNTS]
            assert all(balance >= 0 for balance in balances)
            assert sum(balances) == expected, "money is conserved: every applied request counted once"
            missing = await client.post("/accounts/nobody/deposits", json={"amount": 1})
            assert missing.status_code == 404


def test_two_hundred_concurrent_requests_on_memory() -> None:
    asyncio.run(_exercise("memory://"))


def test_two_hundred_concurrent_requests_on_redis(redis_server: Any) -> None:
    asyncio.run(_exercise(redis_server.url, prefix=f"bank{random.randrange(10**9)}"))
