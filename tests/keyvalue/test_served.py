"""``DriverChecks.served()`` and ``reraise``: a driver's client errors become the library's."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kvsourcing.errors import KvSourcingError, StoreUnavailableError
from kvsourcing.stores.keyvalue.base import DriverChecks


class ClientDown(Exception):
    """What a client raises when its server is gone."""


class ClientOdd(Exception):
    """A client error the driver has no translation for."""


class Checks(DriverChecks):
    client_errors = (ClientDown, ClientOdd)

    def translate(self, err: BaseException) -> KvSourcingError | None:
        return StoreUnavailableError("the server is gone") if isinstance(err, ClientDown) else None


def raise_in_served(err: BaseException) -> None:
    with Checks().served():
        raise err


def raise_through_reraise(err: BaseException) -> None:
    checks = Checks()
    try:
        raise err
    except Checks.client_errors as caught:
        checks.reraise(caught)


@pytest.mark.parametrize("run", [raise_in_served, raise_through_reraise])
def test_a_client_error_is_raised_as_its_translation(run: Callable[[BaseException], None]) -> None:
    err = ClientDown("connection refused")
    with pytest.raises(StoreUnavailableError, match="gone") as caught:
        run(err)
    assert caught.value.__cause__ is err


@pytest.mark.parametrize("run", [raise_in_served, raise_through_reraise])
@pytest.mark.parametrize("err", [ClientOdd("no translation"), ValueError("not the client's")])
def test_other_errors_pass_as_they_are(run: Callable[[BaseException], None], err: Exception) -> None:
    with pytest.raises(type(err)) as caught:
        run(err)
    assert caught.value is err


def test_a_block_without_error_returns_normally() -> None:
    with Checks().served():
        value = 1
    assert value == 1
