"""The ``kvsourcing`` command: a demo, a benchmark, and a look at what a store holds.

Every command takes ``--store URL`` (default: ``$KVSOURCING_STORE``); errors are
printed as one line, never with a password of the URL, and exit non-zero. A driver adds
commands of its own (``kvsourcing dynamodb create-table``) with a ``cli`` module holding
``cli_commands(commands)``; it is imported only when its command is run, or for the help.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import kvsourcing
from kvsourcing.config import (
    ENVIRONMENT_VARIABLE,
    drivers,
    open_store,
    redact_url,
    supported_schemes,
    url_secrets,
)
from kvsourcing.errors import ConfigurationError, KvSourcingError
from kvsourcing.stores.keyvalue import KeyValueStore


def _store_option(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument(
        "--store",
        metavar="URL",
        default=default,
        help=f"store URL ({', '.join(s + '://' for s in supported_schemes())}); "
        f"default: ${ENVIRONMENT_VARIABLE}" + (f", else {default}" if default else ""),
    )


def _store_url(args: argparse.Namespace, default: str | None = None) -> str:
    """The store URL of ``--store``, else ``$KVSOURCING_STORE``, else ``default``."""
    url = args.store or os.environ.get(ENVIRONMENT_VARIABLE) or default
    if not url:
        raise ConfigurationError(
            f"no store URL: pass --store URL or set {ENVIRONMENT_VARIABLE}, "
            "for example redis://localhost:6379/0"
        )
    return url


def _open(args: argparse.Namespace) -> KeyValueStore:
    url = _store_url(args)
    store = open_store(url)
    if url.lower().startswith("memory:"):
        print(
            "kvsourcing: note: a memory:// store is new and empty in every process; to look at "
            "stored data, point --store at Redis or DynamoDB",
            file=sys.stderr,
        )
    if not isinstance(store, KeyValueStore):
        store.close()
        raise ConfigurationError(f"{redact_url(url)!r} is not a key-value store this command can read")
    return store


def _cmd_demo(args: argparse.Namespace) -> int:
    from kvsourcing.tools import demo

    url = _store_url(args, "memory://")
    print(f"kvsourcing demo: a bank account on {redact_url(url)}\n")
    with open_store(url) as store:
        demo.run(store, sys.stdout)
    return 0


_JSON_SCALAR = str | int | float | bool | None


def _plain(value: Any) -> Any:
    """``value`` as JSON can print it: containers as lists and dicts, other values and
    dict keys JSON cannot hold as their ``str``."""
    if isinstance(value, dict):
        return {k if isinstance(k, _JSON_SCALAR) else str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return value if isinstance(value, _JSON_SCALAR) else str(value)


def _cmd_events(args: argparse.Namespace) -> int:
    with _open(args) as store:
        events = store.read_events(args.key, after=args.after)
    if args.json:
        rows = [
            {
                "sequence": e.sequence,
                "type": e.event_type,
                "data": _plain(e.data),
                "commit_id": e.commit_id,
                "recorded_at": None if e.recorded_at is None else e.recorded_at.isoformat(),
            }
            for e in events
        ]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not events:
        print(f"no events stored for {args.key!r}")
        return 0
    width = max(len(e.event_type) for e in events)
    ids = max(len(e.commit_id or "-") for e in events)
    print(f"{'seq':>6}  {'recorded at (UTC)':<26}  {'commit id':<{ids}}  {'type':<{width}}  data")
    for e in events:
        at = "-" if e.recorded_at is None else e.recorded_at.isoformat(timespec="microseconds")[:26]
        data = json.dumps(_plain(e.data), ensure_ascii=False)
        print(f"{e.sequence:>6}  {at:<26}  {e.commit_id or '-':<{ids}}  {e.event_type:<{width}}  {data}")
    return 0


def _cmd_snapshot(args: argparse.Namespace) -> int:
    with _open(args) as store:
        snapshot = store.read_snapshot(args.key)
    if snapshot is None:
        print(f"no snapshot stored for {args.key!r}")
        return 0
    sequence, state = snapshot
    if args.json:
        print(json.dumps({"sequence": sequence, "state": _plain(state)}, indent=2, ensure_ascii=False))
    else:
        print(f"snapshot of {args.key!r} at sequence {sequence}:")
        print(json.dumps(_plain(state), indent=2, ensure_ascii=False))
    return 0


def _cmd_feed_trim(args: argparse.Namespace) -> int:
    from kvsourcing.stores.keyvalue import trim_consumed

    with _open(args) as store:
        removed = trim_consumed(store, args.consumer)
    print(
        f"removed {removed} feed entr{'y' if removed == 1 else 'ies'} consumed by {', '.join(args.consumer)}"
    )
    return 0


def _cmd_reencrypt(args: argparse.Namespace) -> int:
    from kvsourcing.stores.keyvalue.reencrypt import reencrypt

    with _open(args) as store:
        rewritten = reencrypt(store, args.key)
    print(f"re-encrypted {rewritten} record(s) of {args.key!r} under the newest key")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from kvsourcing.tools import benchmark

    url = _store_url(args, "memory://")
    snapshots = f"snapshots every {args.snapshot_interval}" if args.snapshot_interval else "no snapshots"
    with open_store(url, snapshot_interval=args.snapshot_interval) as store:
        print(f"kvsourcing bench on {redact_url(url)}: {args.seconds:g} s per phase, {snapshots}\n")
        sys.stdout.flush()
        results = benchmark.run(store, seconds=args.seconds, load_events=args.events)
    print(benchmark.format_table(results))
    print("\naggregates written: " + ", ".join(r.key for r in results))
    return 0


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or positive, got {text}")
    return value


def _add_driver_commands(commands: argparse._SubParsersAction[Any], argv: Sequence[str] | None) -> None:
    """Let the driver that ``argv`` names (every driver when it names none, so that the help
    lists them) add its commands; a driver with no ``cli`` module has none."""
    words = [word for word in argv or () if not word.startswith("-")]
    for name, (module, extra) in drivers().items():
        if words and words[0] != name:
            continue
        try:
            hook = importlib.import_module(f"{module}.cli")
        except ImportError as err:
            if err.name == f"{module}.cli" or not words:
                continue
            raise ConfigurationError(
                f"the {name} commands need the {extra!r} extra: pip install 'kvsourcing[{extra}]' ({err})"
            ) from err
        hook.cli_commands(commands)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser of the ``kvsourcing`` command, with the commands of the driver
    ``argv`` names (of every driver, when ``argv`` is ``None`` or names none)."""
    parser = argparse.ArgumentParser(
        prog="kvsourcing", description="Event sourcing on key-value stores: memory, Redis, DynamoDB."
    )
    parser.add_argument("--version", action="version", version=f"kvsourcing {kvsourcing.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run a bank-account example",
        description="Run a bank-account example: commands, events, a retried race, a domain fault.",
    )
    _store_option(demo, "memory://")
    demo.set_defaults(run=_cmd_demo)

    events = commands.add_parser(
        "events",
        help="print an aggregate's events",
        description="Print an aggregate's stored events, oldest first.",
    )
    events.add_argument("key", help="the aggregate key")
    events.add_argument(
        "--after", type=_non_negative_int, default=0, metavar="SEQ", help="only events after SEQ"
    )
    events.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _store_option(events)
    events.set_defaults(run=_cmd_events)

    snapshot = commands.add_parser(
        "snapshot",
        help="show an aggregate's newest snapshot",
        description="Show an aggregate's newest snapshot.",
    )
    snapshot.add_argument("key", help="the aggregate key")
    snapshot.add_argument("--json", action="store_true", help="print JSON")
    _store_option(snapshot)
    snapshot.set_defaults(run=_cmd_snapshot)

    bench = commands.add_parser(
        "bench",
        help="measure commit and load speed of a store",
        description="Measure a store from this machine: commits of 1 and of 10 events, then reloads of "
        "an aggregate with --events events, each phase for --seconds; prints throughput and latency "
        "percentiles. It writes real aggregates (keys kvsourcing-bench-*, listed at the end) and "
        "leaves them in the store.",
    )
    bench.add_argument(
        "--seconds", type=_positive_float, default=1.0, metavar="S", help="time per phase (default: 1)"
    )
    bench.add_argument(
        "--events",
        type=_positive_int,
        default=1000,
        metavar="N",
        help="events in the aggregate the load phase reloads (default: 1000)",
    )
    bench.add_argument(
        "--snapshot-interval",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="snapshot every N events (default: 0, no snapshots)",
    )
    _store_option(bench, "memory://")
    bench.set_defaults(run=_cmd_bench)

    feed = commands.add_parser("feed", help="the durable feed", description="The durable feed.")
    feed_commands = feed.add_subparsers(dest="feed_command", required=True, metavar="COMMAND")
    trim = feed_commands.add_parser(
        "trim",
        help="remove feed entries every named consumer has consumed",
        description="Remove the feed entries that every named consumer has consumed. Name every "
        "consumer that follows the feed: removed entries are gone for good, and a consumer "
        "started later begins at the oldest entry kept.",
    )
    trim.add_argument(
        "--consumer", action="append", required=True, metavar="NAME", help="a consumer name (repeat for each)"
    )
    _store_option(trim)
    trim.set_defaults(run=_cmd_feed_trim)

    reencrypt = commands.add_parser(
        "reencrypt",
        help="re-encrypt an aggregate's stream under the newest key",
        description="Re-encrypt an aggregate's events and snapshot under the newest key of "
        "$KVSOURCING_CIPHER_KEY (base64 keys, newest first, comma-separated; older ones "
        "decrypt), safely against concurrent writers. Records stored before encryption was "
        "turned on are encrypted too. Feed entries keep their bytes.",
    )
    reencrypt.add_argument("key", help="the aggregate key")
    _store_option(reencrypt)
    reencrypt.set_defaults(run=_cmd_reencrypt)

    _add_driver_commands(commands, argv)
    return parser


def _fail(message: str, args: argparse.Namespace) -> int:
    """Print ``message`` as one line on stderr, scrubbed of the store URL's secrets; 1."""
    secrets: list[str] = []
    for url in (getattr(args, "store", None), os.environ.get(ENVIRONMENT_VARIABLE)):
        if url:
            secrets.extend(url_secrets(url))
    for secret in sorted(secrets, key=len, reverse=True):
        message = message.replace(secret, "***")
    print("kvsourcing: " + " ".join(message.split()), file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``kvsourcing`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)
    except KvSourcingError as exc:
        return _fail(f"{type(exc).__name__}: {exc}", argparse.Namespace())
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except KvSourcingError as exc:
        return _fail(f"{type(exc).__name__}: {exc}", args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of our output went away (``kvsourcing events KEY | head``): stop quietly,
        # and keep Python from complaining again when it flushes stdout at exit.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        # A failure the library did not translate (a server's own error reply, say): still
        # one line, as for the library's errors, rather than a traceback.
        kind = type(exc)
        name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
        return _fail(f"{name}: {exc}", args)


if __name__ == "__main__":
    sys.exit(main())
