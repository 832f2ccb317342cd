"""Compliance tests of ``kvsourcing reencrypt`` on a key-value store: its driver's
``rewrite`` primitive re-seals a stream under the newest key, concurrent writers lose
nothing, and no record outside the feed keeps the old key, as the backend stores it.

``StoreSuite`` inherits them. They open stores with other ciphers over the driver of the
suite's store (``KeyValueStore(store.driver, cipher=...)``), so the suite's store must be
a ``KeyValueStore``. For a driver without ``rewrite`` (``RewritingDriver``: it is
optional) they check that ``reencrypt`` refuses it; with one, they read the backend raw
with ``raw_values``, which knows the built-in drivers: a suite of another driver
overrides it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

from kvsourcing.crypto import AesGcmCipher, key_id
from kvsourcing.errors import ConcurrencyFault, ConfigurationError
from kvsourcing.stores.keyvalue import KeyValueStore, RewritingDriver, Snapshot
from kvsourcing.stores.keyvalue.reencrypt import reencrypt
from kvsourcing.testing import raw
from kvsourcing.testing.domain import Counter, Incremented, Renamed, write
from kvsourcing.testing.raw import RawValues, sealed_by


class Rotation(NamedTuple):
    """A stream written over a key rotation (``ReencryptTests.rotated``): its driver, key,
    old and new keys, and a store whose cipher seals with the new key and opens both."""

    driver: Any
    key: str
    old: bytes
    new: bytes
    store: KeyValueStore


class ReencryptTests:
    """``reencrypt`` and the driver's ``rewrite``, over the suite's store (``store`` fixture)."""

    def raw_values(self, driver: Any) -> RawValues:
        """What ``driver``'s backend holds, read raw (``raw.raw_values``)."""
        return raw.raw_values(driver)

    @staticmethod
    def rewriting(store: KeyValueStore) -> Any | None:
        """The store's driver when it has ``rewrite``; else ``None``, having checked that
        ``reencrypt`` refuses it, naming the missing primitive (it is optional)."""
        driver = store.driver
        if isinstance(driver, RewritingDriver):
            return driver
        with pytest.raises(ConfigurationError, match="has no rewrite primitive"):
            reencrypt(KeyValueStore(driver, cipher=AesGcmCipher(os.urandom(32))), "reencrypt-refused")
        return None

    def rotated(self, store: KeyValueStore) -> Rotation | None:
        """A stream written over a key rotation: records 1-2 plaintext, 3-4 under an old key
        (a snapshot at 4), 5 under the new one (``None`` for a driver without ``rewrite``)."""
        driver = self.rewriting(store)
        if driver is None:
            return None
        key, old, new = f"reencrypt-{uuid.uuid4().hex[:12]}", os.urandom(32), os.urandom(32)
        write(KeyValueStore(driver), key, Renamed("plain"), Incremented(1))
        sealed_old = KeyValueStore(driver, cipher=AesGcmCipher(old), snapshot_interval=4)
        write(sealed_old, key, Incremented(2), Incremented(3))
        rotated = KeyValueStore(driver, cipher=AesGcmCipher(new, old), compression="zlib")
        write(rotated, key, Renamed("n" * 200))
        return Rotation(driver, key, old, new, rotated)

    @staticmethod
    def racing(
        monkeypatch: pytest.MonkeyPatch, driver: Any, races: int, writer: Callable[[], object]
    ) -> None:
        """Make ``writer`` commit right before each of the next ``races`` rewrites."""
        rewrite = driver.rewrite
        left = [races]

        def raced(*args: Any) -> int | None:
            if left[0]:
                left[0] -= 1
                writer()
            return rewrite(*args)  # type: ignore[no-any-return]

        monkeypatch.setattr(driver, "rewrite", raced)

    def test_reencrypt_seals_every_record_and_the_snapshot_under_the_newest_key(self, store: Any) -> None:
        if (rotation := self.rotated(store)) is None:
            return
        driver, key, old, new, rotated = rotation
        events = rotated.read_events(key)
        assert [sealed_by(value, old) for value in driver.load(key, 0, use_snapshot=False).records] == [
            False, False, True, True, False,
        ]  # fmt: skip
        assert any(sealed_by(value, old) for value in self.raw_values(driver).stored), (
            "the scan sees the records"
        )

        assert reencrypt(rotated, key) == 5  # records 1-4 and the snapshot; record 5 was current

        only_new = KeyValueStore(driver, cipher=AesGcmCipher(new, allow_plaintext=False))
        assert only_new.read_events(key) == events, "the same events, ids and times"
        assert only_new.read_snapshot(key) == (4, {"count": 6, "name": "plain", "audits": []})
        counter = Counter(key, only_new)
        counter.refresh()
        assert (counter.count, counter.name, counter.sequence_number()) == (6, "n" * 200, 5)
        after = self.raw_values(driver)
        assert not [value for value in after.stored if sealed_by(value, old)]
        if driver.feed:
            assert any(key_id(old) in value for value in after.feed), "feed entries keep their bytes"
        assert reencrypt(rotated, key) == 0

    def test_reencrypt_keeps_a_commit_that_lands_before_its_rewrite(
        self, store: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        if (rotation := self.rotated(store)) is None:
            return
        driver, key, old, new, rotated = rotation
        stale_writer = KeyValueStore(driver, cipher=AesGcmCipher(old, new))  # not rotated yet
        self.racing(monkeypatch, driver, 2, lambda: write(stale_writer, key, Incremented(100)))

        assert reencrypt(rotated, key) == 7  # the two racing commits' records too

        events = KeyValueStore(driver, cipher=AesGcmCipher(new, allow_plaintext=False)).read_events(key)
        assert [event.sequence for event in events] == [1, 2, 3, 4, 5, 6, 7]
        assert [event.data for event in events[-2:]] == [{"by": 100}, {"by": 100}]
        assert not [value for value in self.raw_values(driver).stored if sealed_by(value, old)]

    def test_reencrypt_gives_up_on_writers_that_never_stop_writing_nothing(
        self, store: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        if (rotation := self.rotated(store)) is None:
            return
        driver, key, old, new, rotated = rotation
        stored = list(driver.load(key, 0, use_snapshot=False).records)
        stale_writer = KeyValueStore(driver, cipher=AesGcmCipher(old, new))
        self.racing(monkeypatch, driver, 100, lambda: write(stale_writer, key, Incremented(1)))
        with pytest.raises(ConcurrencyFault):
            reencrypt(rotated, key, attempts=3)
        assert list(driver.load(key, 0, use_snapshot=False).records)[:5] == stored

    def test_rewrite_refuses_a_moved_head_or_another_snapshot(self, store: Any) -> None:
        if (rotation := self.rotated(store)) is None:
            return
        driver, key, _, _, rotated = rotation
        records = list(driver.load(key, 0, use_snapshot=False).records)
        snapshot = driver.load(key, 0).snapshot
        assert snapshot is not None and snapshot.sequence == 4
        junk = [b"junk-%d" % sequence for sequence in range(1, 6)]
        assert driver.rewrite(key, 4, junk[:4]) == 5
        assert driver.rewrite(key, 5, junk, Snapshot(3, b"junk")) == 5
        assert driver.rewrite(f"{key}-absent", 0, [], Snapshot(1, b"junk")) == 0
        with pytest.raises(ValueError, match="rewrite of 5 records got 4"):
            driver.rewrite(key, 5, junk[:4])
        assert list(driver.load(key, 0, use_snapshot=False).records) == records
        assert driver.load(key, 0).snapshot == snapshot
        assert driver.rewrite(key, 5, records, snapshot) is None, "the same bytes, written again"
        assert rotated.read_events(key)[-1].data == {"name": "n" * 200}

    def test_reencrypt_of_a_long_stream_in_many_commits(self, store: Any) -> None:
        if (driver := self.rewriting(store)) is None:
            return
        key, old, new = f"reencrypt-{uuid.uuid4().hex[:12]}", os.urandom(32), os.urandom(32)
        sealed_old = KeyValueStore(driver, cipher=AesGcmCipher(old), snapshot_interval=10)
        for by in range(1, 31):
            write(sealed_old, key, Incremented(by))  # 30 commits: more than one DynamoDB transaction
        write(sealed_old, key, *(Renamed(f"r{n}") for n in range(20)))
        rotated = KeyValueStore(driver, cipher=AesGcmCipher(new, old))
        assert reencrypt(rotated, key) == 51  # 50 records and the snapshot (at 50)
        only_new = KeyValueStore(driver, cipher=AesGcmCipher(new, allow_plaintext=False))
        counter = Counter(key, only_new)
        counter.refresh()
        assert (counter.count, counter.name, counter.sequence_number()) == (465, "r19", 50)
        assert [event.sequence for event in only_new.read_events(key)] == list(range(1, 51))
        assert not [value for value in self.raw_values(driver).stored if sealed_by(value, old)]
