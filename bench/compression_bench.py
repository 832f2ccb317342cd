"""Compression and encryption at rest: stored size and time, side by side in one run (a script).

A realistic mix of events of a shop's customer aggregate, committed ten at a time to
memory stores that differ only in ``compression`` and ``cipher``:

* 55 % ``PaymentCaptured`` (amount, currency, a payment id, a timestamp: ~90 bytes),
* 25 % ``OrderPlaced`` with 1-6 order lines (sku, name, quantity, price: ~150-700 bytes),
* 10 % ``AddressChanged`` (street, city, postcode, country: ~150 bytes),
* 7 % ``Renamed`` (~40 bytes), 3 % ``NoteAdded`` (a support note of 0.5-3 kB of text).

For each configuration it prints the stored bytes of the records relative to plain
msgpack (the size ratio; lower is smaller), how many records were stored compressed, and
the time of a commit of ten events and of a refresh of a 1 000-event aggregate relative to
the plain store (medians of per-round ratios, configurations interleaved in each round).

Run: ``python bench/compression_bench.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kvsourcing.aggregate import AggregateBase
from kvsourcing.crypto import AesGcmCipher
from kvsourcing.mapper import FRAME
from kvsourcing.registry import StandardEventRegistry
from kvsourcing.stores import memory
from kvsourcing.stores.keyvalue import KeyValueStore

TEXT = (
    "the customer called about a delayed parcel which the courier marked as delivered although "
    "nobody was home and the neighbour did not receive it either so we opened a claim refunded "
    "shipping and promised a replacement within three working days please follow up"
)
WORDS = TEXT.split()


@dataclass
class PaymentCaptured:
    amount: Decimal
    currency: str
    payment_id: uuid.UUID
    at: dt.datetime


@dataclass
class OrderLine:
    sku: str
    name: str
    quantity: int
    unit_price: Decimal


@dataclass
class OrderPlaced:
    order_id: uuid.UUID
    lines: list[OrderLine] = field(default_factory=list)


@dataclass
class AddressChanged:
    street: str
    city: str
    postcode: str
    country: str


@dataclass
class Renamed:
    name: str


@dataclass
class NoteAdded:
    author: str
    text: str


REGISTRY = StandardEventRegistry("shop")
for _cls in (PaymentCaptured, OrderPlaced, AddressChanged, Renamed, NoteAdded):
    REGISTRY.register_event(_cls)


class Customer(AggregateBase):
    def __init__(self, key: str, store: Any) -> None:
        super().__init__()
        self.paid = Decimal(0)
        self.orders = 0
        self.city = ""
        self.name = ""
        self.initialize(key, REGISTRY, store)
        self.automatic_wireup()

    def replay_paid(self, event: PaymentCaptured) -> None:
        self.paid += event.amount

    def replay_ordered(self, event: OrderPlaced) -> None:
        self.orders += 1

    def replay_moved(self, event: AddressChanged) -> None:
        self.city = event.city

    def replay_renamed(self, event: Renamed) -> None:
        self.name = event.name


def make_event(rng: random.Random) -> Any:
    roll = rng.random()
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=rng.randrange(10**7))
    if roll < 0.55:
        amount = Decimal(rng.randrange(100, 100_000)) / 100
        return PaymentCaptured(
            amount, rng.choice(("EUR", "USD", "GBP")), uuid.UUID(int=rng.getrandbits(128)), at
        )
    if roll < 0.80:
        lines = [
            OrderLine(
                f"SKU-{rng.randrange(10**6):06d}",
                " ".join(
                    rng.choices(("blue", "cotton", "shirt", "large", "organic", "mug", "pack of 3"), k=3)
                ),
                rng.randrange(1, 5),
                Decimal(rng.randrange(199, 9999)) / 100,
            )
            for _ in range(rng.randrange(1, 7))
        ]
        return OrderPlaced(uuid.UUID(int=rng.getrandbits(128)), lines)
    if roll < 0.90:
        return AddressChanged(
            f"{rng.randrange(1, 300)} {rng.choice(('Station Road', 'Rue de la Paix', 'Hauptstrasse'))}",
            rng.choice(("London", "Paris", "Berlin", "Amsterdam")),
            f"{rng.randrange(10000, 99999)}",
            rng.choice(("GB", "FR", "DE", "NL")),
        )
    if roll < 0.97:
        return Renamed(rng.choice(("Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra")))
    return NoteAdded("support@shop.example", " ".join(rng.choices(WORDS, k=rng.randrange(80, 500))))


CONFIGS: dict[str, dict[str, Any]] = {
    "plain": {},
    "zlib": {"compression": "zlib"},
    "zstd": {"compression": "zstd"},
    "aes-gcm": {"cipher": AesGcmCipher(os.urandom(32))},
    "zstd + aes-gcm": {"compression": "zstd", "cipher": AesGcmCipher(os.urandom(32))},
}


def _commit_batch(store: KeyValueStore, key: str, events: list[Any]) -> float:
    customer = Customer(key, store)
    customer.refresh()
    start = time.perf_counter()
    for event in events:
        customer.apply_event(event)
    customer.commit()
    return time.perf_counter() - start


def _refresh(store: KeyValueStore, key: str) -> float:
    start = time.perf_counter()
    Customer(key, store).refresh()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    rng = random.Random(7)
    events = [make_event(rng) for _ in range(1000)]
    stores = {name: memory.new_store(**options) for name, options in CONFIGS.items()}
    for store in stores.values():
        for offset in range(0, len(events), 10):
            _commit_batch(store, "sized", events[offset : offset + 10])
    commit: dict[str, list[float]] = {name: [] for name in CONFIGS}
    load: dict[str, list[float]] = {name: [] for name in CONFIGS}
    absolute: dict[str, list[tuple[float, float]]] = {name: [] for name in CONFIGS}
    for round_ in range(args.rounds):
        order = list(CONFIGS)[round_ % len(CONFIGS) :] + list(CONFIGS)[: round_ % len(CONFIGS)]
        times: dict[str, tuple[float, float]] = {}
        for name in order:
            key = f"r{round_}"
            spent = sum(_commit_batch(stores[name], key, events[i : i + 10]) for i in range(0, 200, 10)) / 20
            times[name] = (spent, _refresh(stores[name], "sized"))
            absolute[name].append(times[name])
        for name in CONFIGS:
            commit[name].append(times[name][0] / times["plain"][0])
            load[name].append(times[name][1] / times["plain"][1])

    plain_bytes = sum(map(len, stores["plain"].driver.load("sized", 0).records))
    print(
        f"{len(events)} events, plain msgpack {plain_bytes} bytes ({plain_bytes / len(events):.0f} per event)"
    )
    print(
        f"{'configuration':<16} {'size':>6} {'compressed':>10}   "
        f"{'commit of 10 events':>21}   {'refresh of 1000':>17}"
    )
    for name, store in stores.items():
        records = store.driver.load("sized", 0).records
        stored = sum(map(len, records))
        compressed = sum(1 for r in records if r[:1] == bytes((FRAME,)) and r[1] & 0x03)
        commit_us = statistics.median(t[0] for t in absolute[name]) * 1e6
        load_ms = statistics.median(t[1] for t in absolute[name]) * 1e3
        print(
            f"{name:<16} {stored / plain_bytes:6.3f} {compressed / len(records):10.0%}   "
            f"{commit_us:6.0f} us {statistics.median(commit[name]):9.2f}x   "
            f"{load_ms:5.1f} ms {statistics.median(load[name]):6.2f}x"
        )


if __name__ == "__main__":
    main()
