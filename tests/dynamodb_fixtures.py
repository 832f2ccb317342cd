"""What the DynamoDB tests here import by name; the fixtures are in ``conftest.py`` and the
code in ``kvsourcing.testing.moto`` and ``kvsourcing.testing.requests``."""

from kvsourcing.testing.moto import REGION, fresh_table_name
from kvsourcing.testing.requests import count_requests, lose_next_reply

__all__ = ["REGION", "count_requests", "fresh_table_name", "lose_next_reply"]
