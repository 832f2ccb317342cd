"""DynamoDB's size limits, which moto does not enforce, checked on the requests the driver sends.

moto takes items up to its own estimate (405 000 bytes) and transactions of any total, so these
tests capture every ``TransactWriteItems`` the driver sends (botocore's
``before-parameter-build`` event) and size its items by AWS's rules: the driver's largest
accepted commits must fit real DynamoDB, and one byte or record more must be refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from kvsourcing.errors import CommitTooLargeError
from kvsourcing.stores.dynamodb import DynamoDBDriver
from kvsourcing.stores.dynamodb.commits import Transaction, build_transaction
from kvsourcing.stores.keyvalue import Commit
from kvsourcing.testing.requests import count_requests

# The limits in binary units ("DynamoDB denotes 1 KB = 1024 bytes", Constraints in Amazon DynamoDB):
# an item of at most 400 KB, a TransactWriteItems of at most 100 actions and 4 MB of items.
AWS_ITEM_BYTES = 400 * 1024
AWS_TRANSACTION_BYTES = 4 * 1024 * 1024

# The largest partition key (2 048 bytes), in 4-byte UTF-8 characters, and a 38-digit sequence
# (the most significant digits a DynamoDB number holds).
LONGEST_KEY = "\U0001f600" * 512
LONGEST_SEQUENCE = 10**37 + 1234567


def number_bytes(text: str) -> int:
    """A number's size: 1 byte, plus 1 per two significant digits on each side of the decimal
    point (rounded up, leading and trailing zeros trimmed), plus 1 when negative.

    The developer guide ("DynamoDB item sizes and formats") says "approximately 1 byte per two
    significant digits, plus 1 byte"; counting the integer and fraction digits apart is the
    exact form measured against AWS, and never less than the guide's.
    """
    negative = text.startswith("-")
    integer, _, fraction = text.lstrip("+-").partition(".")
    integer, fraction = integer.lstrip("0"), fraction.rstrip("0")
    if not (integer + fraction).strip("0"):
        return 1
    integer_digits = len(integer) if fraction else len(integer.rstrip("0"))
    fraction_digits = len(fraction) if integer else len(fraction.lstrip("0"))
    return 1 + math.ceil(integer_digits / 2) + math.ceil(fraction_digits / 2) + negative


def value_bytes(value: dict[str, Any]) -> int:
    """An attribute value's size: a string its UTF-8 bytes, a binary its raw bytes (not its
    base64), a number as above, a list 3 bytes plus 1 byte and the size of each element."""
    ((kind, data),) = value.items()
    if kind == "S":
        return len(data.encode("utf-8"))
    if kind == "B":
        return len(data)
    if kind == "N":
        return number_bytes(data)
    if kind == "L":
        return 3 + sum(1 + value_bytes(element) for element in data)
    raise AssertionError(f"no sizing rule here for type {kind}")


def item_bytes(item: dict[str, Any]) -> int:
    """An item's size: each attribute's name (UTF-8 bytes) plus its value."""
    return sum(len(name.encode("utf-8")) + value_bytes(value) for name, value in item.items())


def sent_transactions(client: Any, table: str) -> list[list[int]]:
    """A live list of the sent ``TransactWriteItems``, each as the real sizes of its items: a
    ``Put``'s item, an ``Update``'s item as it will be (the stored item with its ``SET``s)."""
    sent: list[list[int]] = []

    def finished(update: dict[str, Any]) -> dict[str, Any]:
        stored = client.get_item(TableName=table, Key=update["Key"], ConsistentRead=True).get("Item", {})
        expression, _, removed = update["UpdateExpression"].partition(" REMOVE ")
        assert expression.startswith("SET "), expression
        item = {**stored, **update["Key"]}
        for name in removed.split(",") if removed else ():
            item.pop(name.strip(), None)
        for assignment in expression[len("SET ") :].split(","):
            name, placeholder = (part.strip() for part in assignment.split("="))
            item[name] = update["ExpressionAttributeValues"][placeholder]
        return item

    def capture(params: dict[str, Any], **_: Any) -> None:
        actions = params["TransactItems"]
        assert len(actions) <= 100
        sent.append([item_bytes(a["Put"]["Item"] if "Put" in a else finished(a["Update"])) for a in actions])

    client.meta.events.register("before-parameter-build.dynamodb.TransactWriteItems", capture)
    return sent


def largest(fits: Callable[[int], bool], high: int) -> int:
    """The largest ``n`` below ``high`` for which ``fits(n)``."""
    low = 0
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def transaction(driver: DynamoDBDriver, commit: Commit) -> Transaction:
    """The transaction the driver would send for ``commit`` (nothing sent)."""
    return build_transaction(driver.table_name, [commit], buckets=driver.buckets, feed=driver.feed)


def accepts(driver: DynamoDBDriver, commit: Callable[[int], Commit]) -> Callable[[int], bool]:
    """Whether the driver takes ``commit(n)`` (its transaction built, nothing sent)."""

    def fits(n: int) -> bool:
        try:
            transaction(driver, commit(n))
        except CommitTooLargeError:
            return False
        return True

    return fits


@pytest.fixture
def driver(moto_client: Any, moto_table: str) -> DynamoDBDriver:
    return DynamoDBDriver(moto_client, moto_table)


def assert_fits(sizes: list[int]) -> None:
    assert max(sizes) <= AWS_ITEM_BYTES, f"an item of {max(sizes)} bytes: {sizes}"
    assert sum(sizes) <= AWS_TRANSACTION_BYTES, f"a transaction of {sum(sizes)} bytes: {sizes}"


def test_largest_record_fits_with_the_longest_key_and_numbers(
    driver: DynamoDBDriver, moto_client: Any, moto_table: str
) -> None:
    def commit(size: int) -> Commit:
        return Commit(LONGEST_KEY, LONGEST_SEQUENCE, [b"r" * size], commit_id="é" * 512, named=True)

    size = largest(accepts(driver, commit), AWS_ITEM_BYTES)
    sent = sent_transactions(moto_client, moto_table)
    driver.append(commit(size))  # a clash at that sequence, once sent: only the sizes matter
    assert len(sent) == 1
    assert_fits(sent[0])
    with pytest.raises(CommitTooLargeError):
        driver.append(commit(size + 1))
    assert len(sent) == 1


def test_largest_snapshot_fits(driver: DynamoDBDriver, moto_client: Any, moto_table: str) -> None:
    def commit(size: int) -> Commit:
        return Commit(LONGEST_KEY, LONGEST_SEQUENCE, [b"r"], snapshot=b"s" * size)

    size = largest(accepts(driver, commit), AWS_ITEM_BYTES)
    sent = sent_transactions(moto_client, moto_table)
    driver.append(commit(size))
    assert_fits(sent[0])
    with pytest.raises(CommitTooLargeError, match="snapshot"):
        driver.append(commit(size + 1))


def test_most_tiny_records_fit_one_item_then_split(
    driver: DynamoDBDriver, moto_client: Any, moto_table: str
) -> None:
    """One-byte records, where the list's byte per element is half of each record's cost."""

    def commit(count: int) -> Commit:
        return Commit(LONGEST_KEY, LONGEST_SEQUENCE, [b"r"] * count)

    def one_item(count: int) -> bool:
        return len(transaction(driver, commit(count)).actions) == 3  # head, feed entry, one item

    count = largest(one_item, AWS_ITEM_BYTES)
    sent = sent_transactions(moto_client, moto_table)
    driver.append(commit(count))
    driver.append(commit(count + 1))
    assert [len(sizes) for sizes in sent] == [3, 4], "the next record goes to a second item"
    for sizes in sent:
        assert_fits(sizes)


def test_largest_transaction_fits_with_a_snapshot_and_a_small_head(
    driver: DynamoDBDriver, moto_client: Any, moto_table: str
) -> None:
    """The snapshot has its own item, so the head is small and known: the largest commit
    the driver accepts, with a large snapshot, fits real DynamoDB's 4 MB."""

    def commit(size: int) -> Commit:
        records = [b"r" * 390_000] * 9 + [b"t" * size]
        return Commit(LONGEST_KEY, 0, records, snapshot=b"s" * 200_000, commit_id="c", named=True)

    size = largest(accepts(driver, commit), AWS_ITEM_BYTES)
    sent = sent_transactions(moto_client, moto_table)
    assert driver.append(commit(size)) is None
    assert_fits(sent[0])
    assert sum(sent[0]) > 3_990_000, "close to the limit"
    assert sent[0][1] < 2_200, "the head (after the marker) holds its key and sequence only"
    with pytest.raises(CommitTooLargeError):
        driver.append(commit(size + 1))


def test_an_append_of_many_aggregates_is_held_to_100_actions_before_sending(
    driver: DynamoDBDriver, moto_client: Any
) -> None:
    """Three actions per aggregate (head, feed entry, commit item): 33 aggregates fit one
    transaction, 34 do not, and are refused before anything is sent. (moto itself takes at
    most 25 actions, so the largest accepted append is built here, not sent.)"""

    def append(count: int) -> list[Commit]:
        return [Commit(f"agg-{n}", 0, [b"r"]) for n in range(count)]

    assert len(build_transaction(driver.table_name, append(33), buckets=32, feed=True).actions) == 99
    counts = count_requests(moto_client)
    with pytest.raises(CommitTooLargeError, match="102 items"):
        driver.append_many(append(34))
    assert not counts, "nothing was sent"
    quiet = DynamoDBDriver(moto_client, driver.table_name, feed=False)
    assert len(build_transaction(quiet.table_name, append(50), buckets=32, feed=False).actions) == 100
    with pytest.raises(CommitTooLargeError):
        quiet.append_many(append(51))
    assert not counts
