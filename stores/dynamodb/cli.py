"""The DynamoDB store's commands of the ``kvsourcing`` tool, which finds them here:
``kvsourcing dynamodb create-table``."""

from __future__ import annotations

import argparse
import os
from typing import Any

from kvsourcing.config import ENVIRONMENT_VARIABLE
from kvsourcing.errors import ConfigurationError
from kvsourcing.stores.dynamodb import create_table, make_client, parse_url


def cli_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Add the ``dynamodb`` command and its subcommands to the tool's ``commands``."""
    dynamodb = commands.add_parser(
        "dynamodb", help="DynamoDB administration", description="DynamoDB administration."
    )
    subcommands = dynamodb.add_subparsers(dest="dynamodb_command", required=True, metavar="COMMAND")
    create = subcommands.add_parser(
        "create-table",
        help="create the store's table",
        description="Create the store's table (on-demand billing) and wait until it is ACTIVE; "
        "succeeds when it already exists with the right key schema. The table, region and "
        "endpoint come from the arguments, or from the --store URL (default: "
        f"${ENVIRONMENT_VARIABLE} when no table name is given).",
    )
    create.add_argument("name", nargs="?", help="the table name (default: the table of the store URL)")
    create.add_argument("--region", help="AWS region (default: boto3's, e.g. $AWS_DEFAULT_REGION)")
    create.add_argument("--endpoint-url", metavar="URL", help="DynamoDB Local, moto or LocalStack endpoint")
    create.add_argument(
        "--store",
        metavar="URL",
        help="a dynamodb://TABLE?region=R&endpoint_url=U store URL to take them from",
    )
    create.set_defaults(run=_create_table)


def _pick(what: str, given: str | None, from_url: str | None) -> str | None:
    if given and from_url and given != from_url:
        raise ConfigurationError(
            f"the {what} is given twice, as {given!r} and as {from_url!r} in the store URL; give it once"
        )
    return given or from_url


def _create_table(args: argparse.Namespace) -> int:
    url = args.store or (None if args.name else os.environ.get(ENVIRONMENT_VARIABLE))
    if not url and not args.name:
        raise ConfigurationError(
            f"no table: name it, or pass --store dynamodb://TABLE?region=R (or set {ENVIRONMENT_VARIABLE})"
        )
    table, params = parse_url(url, {}) if url else (None, {})
    name = _pick("table name", args.name, table)
    assert name is not None  # one of the two is set, checked above
    region = _pick("region", args.region, params.get("region"))
    endpoint_url = _pick("endpoint URL", args.endpoint_url, params.get("endpoint_url"))
    client = make_client(region, endpoint_url)
    try:
        created = create_table(client, name)
    finally:
        client.close()
    print(f"table {name!r} {'created' if created else 'already exists'}, and ACTIVE")
    return 0
