"""``reencrypt``: an aggregate's stream re-sealed under the newest key, safely against writers."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from backends import write

from kvsourcing.crypto import AesGcmCipher
from kvsourcing.errors import ConcurrencyFault, ConfigurationError, EncodingError
from kvsourcing.mapper import FRAME
from kvsourcing.stores import memory
from kvsourcing.stores.keyvalue import KeyValueStore
from kvsourcing.stores.keyvalue.reencrypt import reencrypt
from kvsourcing.testing.domain import Incremented, Renamed
from kvsourcing.tools.cli import main

OLD, NEW = os.urandom(32), os.urandom(32)


def _stream(driver: memory.MemoryDriver) -> KeyValueStore:
    """Records 1-2 plaintext, 3-4 under OLD (snapshot at 4), 5 under NEW."""
    write(KeyValueStore(driver), "k", Renamed("plain"), Incremented(1))
    write(
        KeyValueStore(driver, cipher=AesGcmCipher(OLD), snapshot_interval=4),
        "k",
        Incremented(2),
        Incremented(3),
    )
    store = KeyValueStore(driver, cipher=AesGcmCipher(NEW, OLD), compression="zlib")
    write(store, "k", Renamed("n" * 200))
    return store


def test_every_record_and_the_snapshot_end_under_the_newest_key() -> None:
    driver = memory.MemoryDriver()
    store = _stream(driver)
    before = store.read_events("k")
    assert reencrypt(store, "k") == 5  # four records and the snapshot; record 5 was current
    assert all(
        r[:1] == bytes((FRAME,)) and AesGcmCipher(NEW).is_current(r[2:]) for r in driver._streams["k"].records
    )
    only_new = KeyValueStore(driver, cipher=AesGcmCipher(NEW, allow_plaintext=False))
    assert only_new.read_events("k") == before
    assert only_new.read_snapshot("k") == (4, {"count": 6, "name": "plain", "audits": []})
    assert reencrypt(store, "k") == 0


class _RacedDriver(memory.MemoryDriver):
    """A writer commits between reencrypt's read and its rewrite, ``races`` times."""

    def __init__(self, races: int) -> None:
        super().__init__()
        self.races = races

    def rewrite(self, key: str, expected_head: int, records: Any, snapshot: Any = None) -> int | None:
        if self.races:
            self.races -= 1
            write(KeyValueStore(self, cipher=AesGcmCipher(OLD, NEW)), key, Incremented(100))
        return super().rewrite(key, expected_head, records, snapshot)


def test_a_concurrent_commit_is_kept_and_re_encrypted_too() -> None:
    driver = _RacedDriver(races=2)
    store = _stream(driver)
    reencrypt(store, "k")
    events = KeyValueStore(driver, cipher=AesGcmCipher(NEW)).read_events("k")
    assert [e.sequence for e in events] == [1, 2, 3, 4, 5, 6, 7]
    assert [e.data for e in events[-2:]] == [{"by": 100}, {"by": 100}]


def test_writers_that_never_stop_make_it_give_up_writing_nothing() -> None:
    driver = _RacedDriver(races=100)
    store = _stream(driver)
    with pytest.raises(ConcurrencyFault):
        reencrypt(store, "k", attempts=3)
    assert not AesGcmCipher(NEW).is_current(driver._streams["k"].records[2][2:])


def test_a_tampered_record_stops_it_before_anything_is_written() -> None:
    driver = memory.MemoryDriver()
    store = _stream(driver)
    driver._streams["k"].records[3] = driver._streams["k"].records[3][:-1] + b"\x00"
    stored = list(driver._streams["k"].records)
    with pytest.raises(EncodingError, match="cannot re-encrypt 'k': the record at sequence 4"):
        reencrypt(store, "k")
    assert driver._streams["k"].records == stored


def test_it_needs_a_cipher_and_a_driver_that_can_rewrite(redis_server: Any) -> None:
    from kvsourcing.stores import redis as redis_store

    with pytest.raises(ConfigurationError, match="no cipher"):
        reencrypt(memory.new_store(compression="zlib"), "k")
    store = redis_store.new_store(redis_server.client(), cipher=AesGcmCipher(NEW))
    with pytest.raises(ConfigurationError, match="RedisDriver has no rewrite primitive"):
        reencrypt(store, "k")  # type: ignore[arg-type]


def test_the_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("KVSOURCING_CIPHER_KEY", raising=False)
    assert main(["reencrypt", "k", "--store", "memory://"]) == 1
    assert "no cipher" in capsys.readouterr().err
    monkeypatch.setenv("KVSOURCING_CIPHER_KEY", base64.b64encode(NEW).decode())
    assert main(["reencrypt", "k", "--store", "memory://"]) == 0
    assert "re-encrypted 0 record(s) of 'k'" in capsys.readouterr().out
