"""One ``FeedConsumer`` in a process of its own, for the multi-process test in ``test_redis_feed.py``.

Run as ``python feed_consumer_process.py URL PREFIX BUCKETS NAME SLICES LEASE LOG``; it
consumes until SIGTERM (then stops cleanly: leases released, member list left) or until
killed. It appends JSON lines to ``LOG``, each written through to the OS at once, so
that a SIGKILL loses none of them:

* ``["start", time, pid, owner]`` once;
* ``["held", before, after, slices]`` after every heartbeat or claim of the slices it is
  dealt: the slices held once it (which started at ``before`` and ended at ``after``) had
  taken, renewed or released the leases;
* ``["event", time, bucket, key, sequence]`` for every event delivered;
* ``["stopping", time]`` on SIGTERM, before the leases are released.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import Any

from kvsourcing.handlers import PublishedEvent
from kvsourcing.steps import Steps
from kvsourcing.stores import redis as redis_store
from kvsourcing.stores.keyvalue import FeedConsumer, partition_bucket
from kvsourcing.testing.domain import registry


class LoggingConsumer(FeedConsumer):
    """A consumer that logs its leases after each heartbeat or claim."""

    def __init__(self, *args: Any, log: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log = log

    def _due_steps(self) -> Steps[None]:
        if self._until_heartbeat() > 0:
            return  # nothing due: neither heartbeat nor claim runs
        before = time.time()
        yield from super()._due_steps()
        self.log(["held", before, time.time(), sorted(self.slices_held)])


def main() -> None:
    url, prefix, buckets, name, slices, lease, path = sys.argv[1:8]
    buckets_count = int(buckets)
    out = open(path, "a", buffering=1)  # noqa: SIM115 - open until the process ends or is killed

    def log(line: list[Any]) -> None:
        out.write(json.dumps(line) + "\n")

    class Recorder:
        def handle(self, published: PublishedEvent) -> None:
            bucket = partition_bucket(published.key, buckets_count)
            log(["event", time.time(), bucket, published.key, published.sequence])
            time.sleep(0.001)  # some work, so that a SIGKILL is likely to land mid-batch

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    store = redis_store.from_url(url, prefix=prefix, buckets=buckets_count)
    consumer = LoggingConsumer(
        store,
        name,
        registry(),
        slices=int(slices),
        lease_seconds=float(lease),
        batch_size=10,
        poll_interval=0.01,
        log=log,
    )
    consumer.add_handler(Recorder())
    log(["start", time.time(), os.getpid(), consumer.owner])
    while not stopping.is_set():
        if not consumer.run_once():
            stopping.wait(0.01)
    log(["stopping", time.time()])
    consumer.stop()
    store.close()
    out.close()


if __name__ == "__main__":
    main()
