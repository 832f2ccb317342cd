"""Compression and encryption at rest: on every backend, the feed included, and the frame's rules."""

from __future__ import annotations

import base64
import datetime as dt
import os
import uuid
import zlib
from decimal import Decimal
from typing import Any

import msgpack
import pytest
from backends import Backend, read

from kvsourcing import open_store
from kvsourcing.codecs import JsonCodec
from kvsourcing.crypto import AesGcmCipher
from kvsourcing.errors import ConfigurationError, EncodingError
from kvsourcing.mapper import FRAME, MIN_COMPRESSIBLE
from kvsourcing.stores import memory
from kvsourcing.stores.keyvalue import Commit, FeedConsumer, KeyValueStore
from kvsourcing.testing import FeedSuite, StoreSuite
from kvsourcing.testing.domain import Audited, Detail, Incremented, Renamed, registry, write
from kvsourcing.testing.feed_suite import Recorder

KEY_1, KEY_2 = os.urandom(32), os.urandom(16)


def _drain(store: KeyValueStore, prefix: str, count: int) -> list[tuple[str, int, Any]]:
    recorder = Recorder(prefix)
    consumer = FeedConsumer(store, f"c{uuid.uuid4().hex[:8]}", registry())
    consumer.add_handler(recorder)
    for _ in range(200):
        if len(recorder.seen) >= count:
            break
        consumer.run_once()
    consumer.stop()
    return recorder.seen


def test_no_plaintext_of_an_event_anywhere_in_the_backend_feed_included(backend: Backend) -> None:
    secret, control = f"SECRET-{uuid.uuid4().hex}", f"CONTROL-{uuid.uuid4().hex}"
    prefix = f"rest-{uuid.uuid4().hex[:8]}-"
    sealed = backend.open(snapshot_interval=2, compression="zlib", cipher=AesGcmCipher(KEY_1))
    write(sealed, f"{prefix}a", Renamed(secret), Incremented(2), Renamed(secret * 3))
    write(backend.open(snapshot_interval=2), f"{prefix}b", Renamed(control), Incremented(1))

    reader = read(sealed, f"{prefix}a")
    assert (reader.name, reader.count, reader.sequence_number()) == (secret * 3, 2, 3)
    seen = _drain(sealed, prefix, 5)
    names = {(key, seq): getattr(event, "name", None) for key, seq, event in seen}
    assert names[f"{prefix}a", 1] == secret and names[f"{prefix}b", 1] == control

    values = backend.raw_values()
    assert any(control.encode() in value for value in values), "the scan must see what the store holds"
    assert not [value for value in values if secret.encode() in value]
    assert sum(control.encode() in value for value in values) >= 3, "events list, snapshot and feed"


def test_old_records_stay_readable_and_keys_rotate(backend: Backend) -> None:
    key = f"rotate-{uuid.uuid4().hex[:8]}"
    write(backend.open(), key, Renamed("plain"), Incremented(1))
    write(backend.open(compression="zstd"), key, Incremented(2), Renamed("z" * 300))
    write(backend.open(cipher=AesGcmCipher(KEY_1), snapshot_interval=3), key, Incremented(3))
    rotated = backend.open(cipher=AesGcmCipher(KEY_2, KEY_1))
    write(rotated, key, Incremented(4))
    assert (read(rotated, key).count, read(rotated, key).sequence_number()) == (10, 6)
    assert [e.sequence for e in rotated.read_events(key)] == [1, 2, 3, 4, 5, 6]

    with pytest.raises(EncodingError, match=r"at sequence 5: .*encrypted; open the store with cipher="):
        backend.open().read_events(key)
    with pytest.raises(EncodingError, match="key id"):
        backend.open(cipher=AesGcmCipher(KEY_2)).read_events(key)
    with pytest.raises(EncodingError, match="allow_plaintext=False"):
        backend.open(cipher=AesGcmCipher(KEY_2, KEY_1, allow_plaintext=False)).read_events(key)


class TestMemoryStoreCompressedAndEncrypted(StoreSuite):
    def new_store(self, *, snapshot_interval: int = 0) -> KeyValueStore:
        return memory.new_store(
            snapshot_interval=snapshot_interval, compression="zstd", cipher=AesGcmCipher(KEY_1)
        )


class TestMemoryFeedEncrypted(FeedSuite):
    @pytest.fixture(autouse=True)
    def _bind(self) -> None:
        self.shared = memory.new_store(compression="zlib", cipher=AesGcmCipher(KEY_2))

    def new_store(self, *, snapshot_interval: int = 0) -> KeyValueStore:
        return self.shared


def _records(store: KeyValueStore, key: str) -> list[bytes]:
    return list(store.driver.load(key, 0, use_snapshot=False).records)


def test_frame_flags_and_records_that_do_not_shrink() -> None:
    store = memory.new_store(compression="zlib")
    noise = Audited(
        uuid.uuid4(), Detail(dt.datetime.now(dt.UTC), Decimal("1.5")), dt.date.today(), os.urandom(300)
    )
    write(store, "k", Incremented(1), Renamed("a" * 500), noise)
    small, large, random_bytes = _records(store, "k")
    assert small[:2] == bytes((FRAME, 0)) and msgpack.unpackb(small[2:])[0] == "Incremented"
    assert large[:2] == bytes((FRAME, 1)) and len(large) < 100
    assert random_bytes[:2] == bytes((FRAME, 0)) and noise.blob in random_bytes, "did not shrink: kept as is"
    assert len(random_bytes) > MIN_COMPRESSIBLE and read(store, "k").audits == [noise]
    assert msgpack.unpackb(zlib.decompress(large[2:]))[1] == {"name": "a" * 500}
    encrypted = memory.new_store(compression="zlib", cipher=AesGcmCipher(KEY_1))
    write(encrypted, "k", Incremented(1), Renamed("a" * 500))
    assert [r[:2] for r in _records(encrypted, "k")] == [bytes((FRAME, 0x10)), bytes((FRAME, 0x11))]


def test_no_record_of_the_builtin_codecs_starts_with_the_frame_byte() -> None:
    with pytest.raises(msgpack.FormatError):  # 0xC1 is the one type byte msgpack never uses
        msgpack.unpackb(bytes((FRAME,)) + b"\x00" * 8)
    with pytest.raises(UnicodeDecodeError):
        bytes((FRAME,)).decode("utf-8")
    plain = memory.new_store(codec=JsonCodec())
    write(plain, "k", Incremented(1))
    assert _records(plain, "k")[0][:1] == b"["


def test_a_store_without_options_reads_compressed_records() -> None:
    driver = memory.MemoryDriver()
    write(KeyValueStore(driver, compression="zlib", snapshot_interval=1), "k", Renamed("b" * 400))
    plain = KeyValueStore(driver)
    assert read(plain, "k").name == "b" * 400
    assert plain.read_snapshot("k") == (1, {"count": 0, "name": "b" * 400, "audits": []})


def _sealed_store() -> KeyValueStore:
    store = memory.new_store(cipher=AesGcmCipher(KEY_1), snapshot_interval=2)
    write(store, "a", Renamed("alpha"), Incremented(1))
    write(store, "b", Renamed("beta"), Incremented(5))
    return store


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(
            lambda r, s: [r["a"][0][:-1] + bytes([r["a"][0][-1] ^ 1]), r["a"][1]], id="tampered-tag"
        ),
        pytest.param(lambda r, s: [r["a"][0][:30] + b"x" + r["a"][0][31:], r["a"][1]], id="tampered-body"),
        pytest.param(lambda r, s: [r["b"][0], r["a"][1]], id="from-another-aggregate"),
        pytest.param(lambda r, s: [r["a"][1], r["a"][0]], id="swapped-sequences"),
        pytest.param(lambda r, s: [s["a"], r["a"][1]], id="snapshot-as-event"),
        pytest.param(lambda r, s: [r["a"][0][:1] + b"\x11" + r["a"][0][2:], r["a"][1]], id="flags-changed"),
        pytest.param(lambda r, s: [r["a"][0][:1] + b"\x90" + r["a"][0][2:], r["a"][1]], id="reserved-flag"),
        pytest.param(lambda r, s: [r["a"][0][:20], r["a"][1]], id="truncated"),
        pytest.param(
            lambda r, s: [bytes((FRAME, 0x10)) + AesGcmCipher(KEY_2).encrypt(b"x", b""), r["a"][1]],
            id="foreign-key",
        ),
    ],
)
def test_tampered_moved_or_foreign_records_raise_encoding_error(forge: Any) -> None:
    store = _sealed_store()
    records = {key: _records(store, key) for key in "ab"}
    snapshots = {key: store.driver._streams[key].snapshot.state for key in "ab"}
    forged = memory.MemoryDriver()
    forged.append(Commit("a", 0, forge(records, snapshots)))
    reader = KeyValueStore(forged, cipher=AesGcmCipher(KEY_1))
    with pytest.raises(EncodingError, match="cannot read 'a' at sequence"):
        reader.read_events("a")
    with pytest.raises(EncodingError):
        read(reader, "a")


def test_a_snapshot_moved_to_another_aggregate_or_sequence_raises() -> None:
    store = _sealed_store()
    driver = store.driver
    driver._streams["b"].snapshot = driver._streams["a"].snapshot
    with pytest.raises(EncodingError, match="cannot read 'b' at sequence 2"):
        store.read_snapshot("b")
    write(store, "c", Incremented(1), Incremented(1))
    write(store, "c", Incremented(1), Incremented(1))
    driver._streams["c"].snapshot = type(driver._streams["c"].snapshot)(
        2, driver._streams["c"].snapshot.state
    )
    with pytest.raises(EncodingError):
        read(store, "c")


def test_a_record_that_would_expand_enormously_is_refused() -> None:
    bomb = bytes((FRAME, 1)) + zlib.compress(b"\x00" * (80 * 1024 * 1024), 9)
    driver = memory.MemoryDriver()
    driver.append(Commit("k", 0, [bomb]))
    with pytest.raises(EncodingError, match="expands past"):
        KeyValueStore(driver).read_events("k")


def test_open_store_reads_the_cipher_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = f"{base64.b64encode(KEY_2).decode()}, {base64.b64encode(KEY_1).decode()}"
    monkeypatch.setenv("KVSOURCING_CIPHER_KEY", keys)
    store = open_store("memory://?compression=zlib")
    write(store, "k", Renamed("c" * 200))
    (record,) = _records(store, "k")
    assert record[:2] == bytes((FRAME, 0x11))
    assert AesGcmCipher(KEY_2).is_current(record[2:])
    for bad, problem in (
        ("not base64!", "not valid base64"),
        (base64.b64encode(b"short").decode(), "16, 24"),
    ):
        monkeypatch.setenv("KVSOURCING_CIPHER_KEY", bad)
        with pytest.raises(ConfigurationError, match=problem):
            open_store("memory://")


@pytest.mark.parametrize("bad", ["lz4", "", "ZLIB"])
def test_unknown_compression_is_a_configuration_error(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="compression"):
        open_store(f"memory://?compression={bad}")
    with pytest.raises(ConfigurationError, match="compression"):
        memory.new_store(compression=bad)


def test_compression_in_the_url_of_every_scheme(redis_server: Any, moto_client: Any, moto_table: str) -> None:
    from kvsourcing.stores import dynamodb
    from kvsourcing.stores import redis as redis_store

    stores = [
        open_store("memory://?compression=zstd&snapshot_interval=2"),
        redis_store.from_url(f"{redis_server.url}?compression=zstd&prefix=u{uuid.uuid4().hex[:6]}"),
        dynamodb.from_url(f"dynamodb://{moto_table}?compression=zstd", client=moto_client),
    ]
    for store in stores:
        key = f"url-{uuid.uuid4().hex[:8]}"
        write(store, key, Renamed("d" * 300))
        assert _records(store, key)[0][:2] == bytes((FRAME, 2))
        assert read(store, key).name == "d" * 300
        store.close()


def test_cipher_keys_must_be_aes_sizes() -> None:
    for bad in (b"", b"x" * 15, b"x" * 33, "k" * 32):
        with pytest.raises(ValueError, match="16, 24 or 32 bytes"):
            AesGcmCipher(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="#1"):
        AesGcmCipher(KEY_1, b"x" * 20)
    assert "key ids" in repr(AesGcmCipher(KEY_1)) and KEY_1.hex() not in repr(AesGcmCipher(KEY_1))


@pytest.mark.parametrize("compression", ["zlib", "zstd"])
def test_eight_threads_compress_and_decompress_through_one_store(compression: str) -> None:
    import threading

    store = memory.new_store(compression=compression, cipher=AesGcmCipher(KEY_1))
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            for round_ in range(30):
                key = f"t{index}"
                write(store, key, Renamed(f"{index}-{round_}-" + "x" * (100 + index * 50)))
                assert read(store, key).name.startswith(f"{index}-{round_}-")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert all(read(store, f"t{i}").sequence_number() == 30 for i in range(8))
