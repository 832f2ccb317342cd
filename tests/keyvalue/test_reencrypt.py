"""``reencrypt``'s own logic, whatever the driver: what it refuses before writing. How it
re-seals a stream through each driver's ``rewrite``, beside concurrent writers, is in the
store suite every driver runs (``kvsourcing.testing.reencrypt``); the command on Redis and
DynamoDB URLs is in ``tests/tools/test_cli.py``."""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence

import pytest

from kvsourcing.crypto import AesGcmCipher
from kvsourcing.errors import ConfigurationError, EncodingError
from kvsourcing.stores import memory
from kvsourcing.stores.keyvalue import Commit, KeyValueStore, Loaded, Refusal
from kvsourcing.stores.keyvalue.reencrypt import reencrypt
from kvsourcing.testing.domain import Incremented, Renamed, write
from kvsourcing.testing.reencrypt import ReencryptTests
from kvsourcing.tools.cli import main

OLD, NEW = os.urandom(32), os.urandom(32)


def test_a_tampered_record_stops_it_before_anything_is_written() -> None:
    driver = memory.MemoryDriver()
    write(KeyValueStore(driver, cipher=AesGcmCipher(OLD)), "k", Renamed("a"), Incremented(1), Incremented(2))
    driver._streams["k"].records[1] = driver._streams["k"].records[1][:-1] + b"\x00"
    stored = list(driver._streams["k"].records)
    with pytest.raises(EncodingError, match="cannot re-encrypt 'k': the record at sequence 2"):
        reencrypt(KeyValueStore(driver, cipher=AesGcmCipher(NEW, OLD)), "k")
    assert driver._streams["k"].records == stored


class _AppendOnly:
    """A driver without the ``rewrite`` primitive."""

    def __init__(self) -> None:
        self.inner = memory.MemoryDriver()

    def append_many(self, commits: Sequence[Commit]) -> Refusal | None:
        return self.inner.append_many(commits)

    def append(self, commit: Commit) -> int | None:
        return self.inner.append(commit)

    def load(self, key: str, after: int, **options: bool) -> Loaded:
        return self.inner.load(key, after, **options)  # type: ignore[arg-type]

    def close(self) -> None:
        self.inner.close()


def test_it_needs_a_cipher_and_a_driver_that_can_rewrite() -> None:
    with pytest.raises(ConfigurationError, match="no cipher"):
        reencrypt(memory.new_store(compression="zlib"), "k")
    store = KeyValueStore(_AppendOnly(), cipher=AesGcmCipher(NEW))
    with pytest.raises(ConfigurationError, match="_AppendOnly has no rewrite primitive"):
        reencrypt(store, "k")


class TestSuiteOnADriverWithoutRewrite(ReencryptTests):
    """The store suite's re-encryption tests on a driver without the optional primitive:
    each checks that ``reencrypt`` refuses it."""

    @pytest.fixture
    def store(self) -> KeyValueStore:
        return KeyValueStore(_AppendOnly())


def test_the_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("KVSOURCING_CIPHER_KEY", raising=False)
    assert main(["reencrypt", "k", "--store", "memory://"]) == 1
    assert "no cipher" in capsys.readouterr().err
    monkeypatch.setenv("KVSOURCING_CIPHER_KEY", base64.b64encode(NEW).decode())
    assert main(["reencrypt", "k", "--store", "memory://"]) == 0
    assert "re-encrypted 0 record(s) of 'k'" in capsys.readouterr().out
