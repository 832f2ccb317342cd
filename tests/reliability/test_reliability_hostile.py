"""Hostile input: keys, prefixes, payloads and stored bytes chosen to break the store.

Every input either round-trips exactly or fails with a typed ``KvSourcingError`` before
anything is written; no key reaches another key's data, no prefix another prefix's data,
and no stored bytes decode into events they do not hold.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import redis
from hammer import Add, Tally, record_figure
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import kvsourcing
import kvsourcing.codecs as codecs_module
from kvsourcing import InvalidKeyError, KvSourcingError, StandardEventRegistry
from kvsourcing.codecs import JsonCodec, MsgpackCodec
from kvsourcing.errors import ConfigurationError, EncodingError
from kvsourcing.keys import MAX_KEY_BYTES
from kvsourcing.stores import dynamodb
from kvsourcing.stores import redis as redis_store
from kvsourcing.stores.keyvalue import Commit
from kvsourcing.testing.servers import RedisServer
from kvsourcing.testing.suite import RawWriter

SETTINGS = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}
TRIED: dict[str, int] = {}


def tried(name: str) -> None:
    TRIED[name] = TRIED.get(name, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def report_inputs_tried() -> Iterator[None]:
    yield
    for name, count in sorted(TRIED.items()):
        record_figure(f"hostile inputs: {name}", inputs=count)


# --------------------------------------------------------------------------- keys

HOSTILE_CHARS = "{}:*?[]\\\n\r\t\x00\x7f\x85 '\"é中😀\u200b\ufeff\ud800\udfff/%"

hostile_keys = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.sampled_from(HOSTILE_CHARS + "ab"), min_size=1, max_size=30),
    st.builds(
        lambda c, n: c * n,
        st.sampled_from(["a", "{", ":", "é", "中", "😀"]),
        st.integers(MAX_KEY_BYTES // 4 - 2, MAX_KEY_BYTES + 2),
    ),
    st.sampled_from(["e:x", "s:x", "c:x", "x}:e:y", "{kvsourcing:b1}:e:x", "*", "a\nb", "\udc80"]),
)


def key_is_valid(key: str) -> bool:
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        return False
    return bool(key) and size <= MAX_KEY_BYTES and not re.search(r"[\x00-\x1f\x7f-\x9f]", key)


class KeyBackend:
    """A store and a way to see everything it holds, so 'nothing written' can be checked."""

    def __init__(self, store: Any, footprint: Callable[[], Any]) -> None:
        self.store, self.footprint = store, footprint


@pytest.fixture
def memory_backend() -> Iterator[KeyBackend]:
    store = kvsourcing.open_store("memory://")
    driver = store.driver
    yield KeyBackend(store, lambda: {k: list(v.records) for k, v in driver._streams.items()})
    store.close()


@pytest.fixture
def redis_backend(redis_server: RedisServer) -> Iterator[KeyBackend]:
    prefix = f"hostile-{uuid.uuid4().hex[:8]}"
    client = redis_server.client()
    store = redis_store.new_store(client, prefix=prefix)
    yield KeyBackend(store, lambda: sorted(client.scan_iter(match=f"{{{prefix}:*", count=1000)))
    store.close()
    client.close()


@pytest.fixture
def dynamodb_backend(moto_client: Any, moto_table: str) -> Iterator[KeyBackend]:
    store = dynamodb.new_store(moto_table, client=moto_client)

    def footprint() -> Any:
        items = moto_client.scan(TableName=moto_table, ConsistentRead=True)["Items"]
        return sorted(repr(sorted(item.items())) for item in items)

    yield KeyBackend(store, footprint)
    store.close()


# Keys every run writes whatever hypothesis draws (one of them is refused: a control character).
ALWAYS_TRIED_KEYS = ["{a}", "{a}:e:b", "a:b", "*", "x" * 1000, "ключ 🔑", "a}{b", "line\nbreak", "c:x", "a"]

# moto copies and scans the table per request: fewer examples there.
KEY_EXAMPLES = {"memory_backend": 150, "redis_backend": 100, "dynamodb_backend": 12}


@pytest.mark.parametrize("backend_name", list(KEY_EXAMPLES))
def test_hostile_keys_round_trip_or_are_refused_and_never_reach_each_other(
    backend_name: str, request: pytest.FixtureRequest
) -> None:
    backend: KeyBackend = request.getfixturevalue(backend_name)
    store = backend.store
    expected: dict[str, list[str]] = {}

    @settings(max_examples=KEY_EXAMPLES[backend_name], **SETTINGS)
    @given(st.lists(hostile_keys, min_size=1, max_size=6, unique=True))
    @example(ALWAYS_TRIED_KEYS)
    def run(keys: list[str]) -> None:
        for key in keys:
            tried(f"aggregate keys ({backend_name.removesuffix('_backend')})")
            if not key_is_valid(key):
                before = backend.footprint()
                with pytest.raises(InvalidKeyError):
                    Tally(key, store)
                with pytest.raises(InvalidKeyError):
                    store.commit_events(RawWriter(key, 0, [Add("x", 1)], StandardEventRegistry("x")))
                with pytest.raises(InvalidKeyError):
                    store.read_events(key)
                assert backend.footprint() == before
                continue
            op = uuid.uuid4().hex
            tally = Tally(key, store)
            tally.handle(Add(op, 1 + len(expected.get(key, [])) % 3))
            expected.setdefault(key, []).append(op)
        for key in keys:
            if key in expected:
                check_key(store, key, expected[key])

    run()
    for key, ops in expected.items():  # nothing written later reached an earlier key
        check_key(store, key, ops)
    assert len(expected) >= len(ALWAYS_TRIED_KEYS) - 1, "too few keys were written to prove anything"


def check_key(store: Any, key: str, ops: list[str]) -> None:
    events = store.read_events(key)
    assert all(e.key == key for e in events)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    commits = [e.data["op"] for e in events if e.data["part"] == 0]
    assert commits == ops, f"key {key!r} holds {commits}, expected {ops}"
    tally = Tally(key, store)
    tally.refresh()
    assert tally.count == len(events)


# --------------------------------------------------------------------------- prefixes

prefixes = st.one_of(
    st.text(min_size=1, max_size=12),
    st.text(alphabet=st.sampled_from(":b0123456789{}*?é\n"), min_size=1, max_size=10),
)
FIXED_PREFIX_PAIRS = [
    ("p", "p:"),
    ("p", "p:b1"),
    ("p:b1", "p:b12"),
    ("kvsourcing", "kvsourcing:b0"),
    ("a", "ab"),
    ("x:b1}:e:", "x"),
]


def open_prefixed(server: RedisServer, prefix: str) -> Any:
    return redis_store.new_store(server.client(), prefix=prefix, buckets=16)


def store_keys(client: redis.Redis) -> set[bytes]:
    return set(client.scan_iter(count=1000))


def check_prefixes_apart(server: RedisServer, client: redis.Redis, first: str, second: str) -> None:
    stores = []
    for prefix in (first, second):
        if "{" in prefix or "}" in prefix:
            with pytest.raises(ConfigurationError):
                open_prefixed(server, prefix)
            return
        stores.append(open_prefixed(server, prefix))
    run = uuid.uuid4().hex[:6]
    keys = [k for k in (f"k{run}", f"k{run}:x", f"{{{first}:b1}}:e:k{run}", "*") if key_is_valid(k)]
    before = store_keys(client)
    written: dict[int, set[bytes]] = {}
    for index, store in enumerate(stores):
        for key in keys:
            tally = Tally(key, store)
            tally.refresh()
            tally.handle(Add(f"{index}:{run}:{key}", 1))
        written[index] = store_keys(client) - before - set().union(*written.values())
    for index, (store, prefix) in enumerate(zip(stores, (first, second), strict=True)):
        # The driver's layout: {P:bN}:e:<key>, {P:bN}:s:<key>, {P:bN}:m:<key>, {P:bN}:f (feed).
        own = re.compile(rb"\{" + re.escape(prefix.encode()) + rb":b\d+\}:([esm]:|f\Z)")
        assert written[index] and all(own.match(k) for k in written[index]), (prefix, written[index])
        for key in keys:
            mine = [e.data["op"] for e in store.read_events(key) if e.data["op"].endswith(f":{run}:{key}")]
            assert mine == [f"{index}:{run}:{key}"], (prefix, key, mine)
    assert not written[0] & written[1]


def test_fixed_prefixes_that_are_prefixes_of_each_other_stay_apart(redis_server: RedisServer) -> None:
    client = redis_server.client()
    try:
        for first, second in FIXED_PREFIX_PAIRS:
            tried("Redis prefix pairs")
            check_prefixes_apart(redis_server, client, first, second)
            check_prefixes_apart(redis_server, client, second, first)
    finally:
        client.close()


def test_generated_prefixes_stay_apart(redis_server: RedisServer) -> None:
    client = redis_server.client()

    @settings(max_examples=40, **SETTINGS)
    @given(prefixes, prefixes)
    def run(first: str, second: str) -> None:
        if first == second:
            return
        tried("Redis prefix pairs")
        check_prefixes_apart(redis_server, client, first, second)

    try:
        run()
    finally:
        client.close()


# --------------------------------------------------------------------------- payloads

payload_events = StandardEventRegistry("hostile")


@payload_events.register_event
@dataclass
class Carried:
    value: Any


class Unsupported:
    def __repr__(self) -> str:
        return "Unsupported()"


hashables = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.tuples(st.integers(-5, 5), st.text(max_size=3)),
    st.frozensets(st.integers(-5, 5), max_size=3),
)
scalars = st.one_of(
    hashables,
    st.text(),
    st.builds(lambda n: "x" * n, st.integers(0, 200_000)),
    st.decimals(allow_nan=False),
    st.datetimes(timezones=st.none() | st.timezones()),
    st.uuids(),
    st.just(Unsupported()),
    st.complex_numbers(max_magnitude=10),
)
payloads = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.sets(hashables, max_size=4),
        st.dictionaries(hashables, children, max_size=4),
    ),
    max_leaves=30,
)

SUPPORTED = (
    type(None),
    bool,
    int,
    float,
    str,
    bytes,
    Decimal,
    dt.datetime,
    uuid.UUID,
    list,
    tuple,
    set,
    frozenset,
    dict,
)


def encodable(value: Any) -> bool:
    """Whether both codecs promise to carry ``value`` (every part a supported type)."""
    if type(value) not in SUPPORTED:
        return False
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
    if isinstance(value, dict):
        return all(encodable(k) and encodable(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(encodable(v) for v in value)
    return True


def canon(value: Any) -> Any:
    """A form in which equal payloads compare equal, NaN included, and types are kept."""
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, dict):
        return ("dict", frozenset((canon(k), canon(v)) for k, v in value.items()))
    if isinstance(value, (set, frozenset)):
        return (type(value).__name__, frozenset(canon(v) for v in value))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(canon(v) for v in value))
    if isinstance(value, dt.datetime):
        return ("datetime", value.isoformat())
    return (type(value).__name__, value)


def hashable_canon(value: Any) -> Any:
    return canon(value)


@pytest.fixture(params=["memory/msgpack", "memory/json", "redis/msgpack"])
def payload_store(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any, Callable[[], Any]]]:
    where, codec_name = request.param.split("/")
    codec = JsonCodec() if codec_name == "json" else MsgpackCodec()
    if where == "memory":
        store = kvsourcing.open_store("memory://", codec=codec)
        driver = store.driver
        yield codec_name, store, lambda: {k: list(v.records) for k, v in driver._streams.items()}
        store.close()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    client = server.client()
    prefix = f"payload-{uuid.uuid4().hex[:8]}"
    store = redis_store.new_store(client, prefix=prefix, codec=codec)
    yield codec_name, store, lambda: sorted(client.scan_iter(match=f"{{{prefix}:*", count=1000))
    store.close()
    client.close()


def test_hostile_payloads_round_trip_or_fail_typed_before_writing(
    payload_store: tuple[str, Any, Callable[[], Any]],
) -> None:
    codec, store, footprint = payload_store
    outcomes = {"round-tripped": 0, "refused": 0}

    @settings(max_examples=120, **SETTINGS)
    @given(st.lists(payloads, min_size=1, max_size=3))
    def run(values: list[Any]) -> None:
        tried(f"payloads ({codec})")
        key = f"payload-{uuid.uuid4().hex}"
        writer = RawWriter(key, 0, [Carried(v) for v in values], payload_events)
        if all(encodable(v) for v in values):
            store.commit_events(writer)
            events = store.read_events(key)
            assert [e.sequence for e in events] == list(range(1, len(values) + 1))
            for event, value in zip(events, values, strict=True):
                assert event.event_type == "Carried"
                assert canon(event.data["value"]) == canon(value)
            outcomes["round-tripped"] += 1
            return
        before = footprint()
        with pytest.raises(KvSourcingError) as caught:
            store.commit_events(writer)
        assert isinstance(caught.value, EncodingError), caught.value
        assert key in str(caught.value)
        assert footprint() == before
        assert store.read_events(key) == []
        outcomes["refused"] += 1

    run()
    assert outcomes["round-tripped"] > 10 and outcomes["refused"] > 5, outcomes


@pytest.mark.parametrize("codec", [MsgpackCodec(), JsonCodec()], ids=["msgpack", "json"])
def test_nesting_round_trips_when_shallow_and_fails_typed_when_deep(
    codec: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = kvsourcing.open_store("memory://", codec=codec)
    searched: list[object] = []
    locate = codecs_module._locate
    monkeypatch.setattr(codecs_module, "_locate", lambda *args: searched.append(args) or locate(*args))
    shallow: Any = "leaf"
    for _ in range(200):
        shallow = [shallow]
    store.commit_events(RawWriter("shallow", 0, [Carried(shallow)], payload_events))
    back = store.read_events("shallow")[0].data["value"]
    for _ in range(200):
        assert isinstance(back, list) and len(back) == 1
        back = back[0]
    assert back == "leaf"
    for depth in (3_000, 100_000):
        deep: Any = {}
        for _ in range(depth):
            deep = {"k": deep}
        with pytest.raises(EncodingError, match="nested too deeply"):
            store.commit_events(RawWriter(f"deep-{depth}", 0, [Carried(1), Carried(deep)], payload_events))
        assert searched == [], "refused at once, not after a search of the value (quadratic in its depth)"
        assert store.read_events(f"deep-{depth}") == []
    tried("deep nesting")


def test_huge_strings_round_trip_on_redis(redis_server: RedisServer) -> None:
    client = redis_server.client()
    store = redis_store.new_store(client, prefix=f"huge-{uuid.uuid4().hex[:6]}")
    try:
        huge = "😀" * 2_000_000 + "end"  # 8 MB of UTF-8
        blob = bytes(range(256)) * 20_000
        store.commit_events(RawWriter("huge", 0, [Carried(huge), Carried(blob)], payload_events))
        events = store.read_events("huge")
        assert events[0].data["value"] == huge and events[1].data["value"] == blob
        nan = store.read_events("huge")
        assert len(nan) == 2
        store.commit_events(RawWriter("nan", 0, [Carried({math.nan: [math.nan, -0.0]})], payload_events))
        ((key, value),) = store.read_events("nan")[0].data["value"].items()
        assert math.isnan(key) and math.isnan(value[0]) and math.copysign(1, value[1]) == -1
        tried("huge strings")
    finally:
        store.close()
        client.close()


# --------------------------------------------------------------------------- stored bytes


def decode_each(codec: Any, records: list[bytes]) -> list[Any] | None:
    """Each record decoded alone, or ``None`` if any is not a well-formed stored event."""
    values = []
    for record in records:
        try:
            value = codec.decode(record)
        except EncodingError:
            return None
        if not (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)):
            return None
        if not isinstance(value[2], str):
            return None
        values.append(value)
    return values


record_parts = st.one_of(
    st.binary(max_size=12),
    st.sampled_from([b"\x93", b"\x92", b"\xa6Ticked", b"\x80", b"\xc0", b"\x01\x02", b"\xa1x", b"\x91"]),
    st.builds(
        lambda op: MsgpackCodec().encode(["Ticked", {"op": op, "part": 0, "parts": 1}, "reliability"]),
        st.text(max_size=4),
    ),
)
stored_records = st.lists(
    st.lists(record_parts, min_size=1, max_size=3).map(b"".join),
    min_size=1,
    max_size=4,
)


def test_stored_bytes_decode_exactly_or_fail_with_encoding_error() -> None:
    """Corrupt or crafted records never decode into events they do not hold, and never
    fail with anything but ``EncodingError``."""
    codec = MsgpackCodec()

    @settings(max_examples=400, **SETTINGS)
    @given(stored_records)
    def run(records: list[bytes]) -> None:
        tried("stored byte records")
        store = kvsourcing.open_store("memory://")
        store.driver.append(Commit("raw", 0, records))
        expected = decode_each(codec, records)
        if expected is None:
            with pytest.raises(EncodingError):
                store.read_events("raw")
            with pytest.raises(EncodingError):
                Tally("raw", store).refresh()
            return
        events = store.read_events("raw")
        assert [[e.event_type, e.data, e.domain] for e in events] == expected

    run()


def test_records_split_across_boundaries_are_not_stitched_together() -> None:
    good = MsgpackCodec().encode(["Ticked", {"op": "a", "part": 0, "parts": 1}, "reliability"])
    store = kvsourcing.open_store("memory://")
    store.driver.append(Commit("stitched", 0, [good[:5], good[5:] + good]))
    with pytest.raises(EncodingError):
        store.read_events("stitched")
    with pytest.raises(EncodingError):
        Tally("stitched", store).refresh()
