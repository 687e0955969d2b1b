"""Consumer-group conveniences for the `test_groups_*` end-to-end tests.

* `produce_numbered`: messages whose value is their decimal id, on `id % partitions`.
* `GroupLog`: what the members of a group did (rebalance callbacks, processed messages,
  commit failures), thread-safe, with `wait_for` for liveness bounds.
* `ConfluentMember`: one confluent-kafka consumer polled by its own thread; it processes a
  message by reporting it, then commits that message's offset synchronously.
* `SubprocessMember`: the same consumer in a child process (`python -m helpers.groups`), so a
  test can SIGKILL it and the group sees a member vanish without a LeaveGroup.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from kafka.protocol.consumer.group import OffsetCommitRequest

from helpers import kafka_wire
from helpers.confluent import DeliveryLog, client_config, produce_with_backpressure

# Kafka's group.min.session.timeout.ms: the shortest session a broker accepts by default,
# so a vanished member is noticed after ~6 s.
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 500  # well under a third of the session, as Kafka recommends
# No initial rebalance delay: the first member's JoinGroup is answered at once.
GROUP_BROKER_SETTINGS: dict[str, object] = {"group.initial.rebalance.delay.ms": 0}
SETTLE_LIMIT_S = 60.0  # bound on a group settling or catching up; a healthy one takes seconds
POLL_S = 0.1
CRASH_MARK = "member crashed"  # in a failure text: stop waiting, the member is gone
SUBPROCESS_EXIT_S = 30.0

TESTS_DIR = Path(__file__).resolve().parents[1]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def classic_config(**extra: Any) -> dict[str, Any]:
    """Consumer settings for a classic-protocol member with manual commits."""
    config: dict[str, Any] = {
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS,
    }
    config.update(extra)
    return config


# --------------------------------------------------------------------------- producing


def produce_numbered(bootstrap: str, topic: str, ids: Iterable[int], partitions: int) -> None:
    """Produce one message per id (value = the id in decimal) to partition `id % partitions`."""
    wanted = list(ids)
    producer = Producer(client_config(bootstrap, **{"enable.idempotence": True, "linger.ms": 5}))
    log = DeliveryLog()
    for i in wanted:
        produce_with_backpressure(
            producer,
            topic=topic,
            value=b"%d" % i,
            partition=i % partitions,
            on_delivery=log.callback(i),
        )
    assert producer.flush(60) == 0, "producer still had messages queued after 60 s"
    assert not log.failed, f"failed deliveries: {list(log.failed.items())[:5]}"
    assert sorted(log.delivered) == sorted(wanted)


# --------------------------------------------------------------------------- generations

ILLEGAL_GENERATION = 22  # Kafka's error code; kept local on purpose
GENERATION_PROBE_LIMIT = 50  # a test group that rebalanced this often is broken anyway


def probe_generation(bootstrap: str, group: str, member_id: str, topic: str) -> int:
    """The classic group's current generation, found the way a client would learn it was
    wrong: OffsetCommit v8 as `member_id` to `topic`-0 (a topic the group does not consume)
    with generations 1, 2, ... until one is not ILLEGAL_GENERATION.

    DescribeGroups does not report the generation, and librdkafka does not expose it.
    """
    topic_cls = OffsetCommitRequest.OffsetCommitRequestTopic
    with kafka_wire.WireConnection(bootstrap) as conn:
        for generation in range(1, GENERATION_PROBE_LIMIT + 1):
            request = OffsetCommitRequest[8](
                group_id=group,
                generation_id_or_member_epoch=generation,
                member_id=member_id,
                group_instance_id=None,
                topics=[
                    topic_cls(
                        name=topic,
                        partitions=[
                            topic_cls.OffsetCommitRequestPartition(
                                partition_index=0, committed_offset=0
                            )
                        ],
                    )
                ],
            )
            response = conn.request(request)
            (code,) = [p.error_code for t in response.topics for p in t.partitions]
            if code == 0:
                return generation
            if code != ILLEGAL_GENERATION:
                raise AssertionError(f"OffsetCommit probe answered error {code}: {response}")
    raise AssertionError(f"no generation in 1..{GENERATION_PROBE_LIMIT} accepted for {member_id}")


# --------------------------------------------------------------------------- the record


@dataclass(frozen=True)
class Processed:
    member: str
    partition: int
    offset: int
    msg_id: int


@dataclass(frozen=True)
class Callback:
    """One rebalance callback as a member saw it."""

    member: str
    kind: str  # "assign", "revoke" or "lost"
    partitions: frozenset[int]


class EventSink(Protocol):
    def assigned(self, member: str, partitions: Iterable[int]) -> None: ...
    def revoked(self, member: str, partitions: Iterable[int]) -> None: ...
    def lost(self, member: str, partitions: Iterable[int]) -> None: ...
    def processed(self, member: str, partition: int, offset: int, msg_id: int) -> None: ...
    def closed(self, member: str) -> None: ...
    def failed(self, member: str, what: str) -> None: ...


@dataclass
class GroupLog:
    """Everything the members of one group reported. Thread-safe (one lock).

    Assignments are tracked as "owned = owned | assigned - revoked", which is right for both
    eager callbacks (revoke everything, assign everything) and incremental ones.
    """

    callbacks: list[Callback] = field(default_factory=list)
    processed_log: list[Processed] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    owned: dict[str, set[int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- EventSink ------------------------------------------------------------------------

    def assigned(self, member: str, partitions: Iterable[int]) -> None:
        parts = frozenset(partitions)
        with self._lock:
            self.callbacks.append(Callback(member, "assign", parts))
            self.owned.setdefault(member, set()).update(parts)

    def revoked(self, member: str, partitions: Iterable[int]) -> None:
        parts = frozenset(partitions)
        with self._lock:
            self.callbacks.append(Callback(member, "revoke", parts))
            self.owned.setdefault(member, set()).difference_update(parts)

    def lost(self, member: str, partitions: Iterable[int]) -> None:
        parts = frozenset(partitions)
        with self._lock:
            self.callbacks.append(Callback(member, "lost", parts))
            self.owned.setdefault(member, set()).difference_update(parts)

    def closed(self, member: str) -> None:
        """The member's consumer is closed: it owns nothing, whatever its callbacks said
        (aiokafka's stop() leaves the group without a revoke callback)."""
        with self._lock:
            self.owned.pop(member, None)

    def processed(self, member: str, partition: int, offset: int, msg_id: int) -> None:
        with self._lock:
            self.processed_log.append(Processed(member, partition, offset, msg_id))

    def failed(self, member: str, what: str) -> None:
        with self._lock:
            self.failures.append(f"{member}: {what}")

    # -- reading --------------------------------------------------------------------------

    def assignments(self) -> dict[str, frozenset[int]]:
        with self._lock:
            return {m: frozenset(p) for m, p in self.owned.items()}

    def processed_so_far(self) -> list[Processed]:
        with self._lock:
            return list(self.processed_log)

    def callbacks_so_far(self) -> list[Callback]:
        with self._lock:
            return list(self.callbacks)

    def failures_so_far(self) -> list[str]:
        with self._lock:
            return list(self.failures)

    def processed_ids(self) -> Counter[int]:
        return Counter(p.msg_id for p in self.processed_so_far())

    def has_processed(self, ids: Iterable[int]) -> bool:
        seen = set(self.processed_ids())
        return all(i in seen for i in ids)

    def summary(self) -> str:
        counts = Counter(p.member for p in self.processed_so_far())
        owned = {m: sorted(p) for m, p in sorted(self.assignments().items())}
        return (
            f"owned={owned} processed per member={dict(counts)} "
            f"failures={self.failures_so_far()[:10]} "
            f"last callbacks={self.callbacks_so_far()[-12:]}"
        )

    def wait_for(
        self, predicate: Callable[[], bool], what: str, limit_s: float = SETTLE_LIMIT_S
    ) -> None:
        """Poll until `predicate()` holds; a liveness bound, not a timing assertion."""
        deadline = time.monotonic() + limit_s
        while not predicate():
            crashed = [f for f in self.failures_so_far() if CRASH_MARK in f]
            if crashed:
                raise AssertionError(f"a member crashed while waiting for {what}: {crashed}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"gave up after {limit_s:.0f} s waiting for {what}: {self.summary()}"
                )
            time.sleep(0.05)

    def wait_for_assignment(
        self,
        expected_sizes: Mapping[str, int],
        partitions: int,
        limit_s: float = SETTLE_LIMIT_S,
    ) -> dict[str, frozenset[int]]:
        """Wait until exactly these members own partitions of these sizes, covering all."""

        def settled() -> bool:
            owned = {m: p for m, p in self.assignments().items() if p}
            return owned_partition_the_topic(owned, partitions) and {
                m: len(p) for m, p in owned.items()
            } == dict(expected_sizes)

        self.wait_for(settled, f"assignment sizes {dict(expected_sizes)}", limit_s)
        return {m: p for m, p in self.assignments().items() if p}

    def wait_for_processed(self, ids: Iterable[int], limit_s: float = SETTLE_LIMIT_S) -> None:
        wanted = list(ids)
        self.wait_for(
            lambda: self.has_processed(wanted),
            f"ids {wanted[0]}..{wanted[-1]} to be processed" if wanted else "nothing",
            limit_s,
        )


def owned_partition_the_topic(owned: Mapping[str, frozenset[int]], partitions: int) -> bool:
    """Every partition owned by exactly one member."""
    seen: list[int] = [p for parts in owned.values() for p in parts]
    return sorted(seen) == list(range(partitions))


def duplicates(processed: Iterable[Processed]) -> dict[int, list[Processed]]:
    """Message ids processed more than once, with who processed them where."""
    by_id: dict[int, list[Processed]] = {}
    for p in processed:
        by_id.setdefault(p.msg_id, []).append(p)
    return {i: ps for i, ps in by_id.items() if len(ps) > 1}


# --------------------------------------------------------------------------- confluent member


def _partitions(tps: Iterable[TopicPartition]) -> list[int]:
    return sorted(tp.partition for tp in tps)


class ConfluentLoop:
    """The poll/process/commit loop of one confluent-kafka group member. Not thread-safe:
    `run` owns the consumer; other threads only call `request_stop`."""

    def __init__(
        self,
        name: str,
        bootstrap: str,
        group: str,
        topic: str,
        sink: EventSink,
        config: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> None:
        self.name = name
        self.topic = topic
        self.sink = sink
        self.limit = limit
        self._stop = threading.Event()
        self.member_id: str | None = None
        settings = client_config(
            bootstrap,
            **{
                "group.id": group,
                "client.id": name,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                **dict(config or {}),
            },
        )
        self.consumer = Consumer(settings)

    def _on_assign(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        self.member_id = consumer.memberid()
        self.sink.assigned(self.name, _partitions(tps))

    def _on_revoke(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        self.sink.revoked(self.name, _partitions(tps))

    def _on_lost(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        self.sink.lost(self.name, _partitions(tps))

    def request_stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Poll, process, commit until asked to stop (or the limit is reached); then close()."""
        done = 0
        try:
            self.consumer.subscribe(
                [self.topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            while not self._stop.is_set() and (self.limit is None or done < self.limit):
                msg = self.consumer.poll(POLL_S)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.fatal():
                        self.sink.failed(self.name, f"{CRASH_MARK}: fatal consumer error {err}")
                        return
                    continue  # informational (e.g. a broker connection dropped); it retries
                self._process(msg)
                done += 1
        except Exception as exc:  # reported to the test, which fails on any failure
            self.sink.failed(self.name, f"{CRASH_MARK}: {exc!r}")
        finally:
            try:
                self.consumer.close()
            except Exception as exc:
                self.sink.failed(self.name, f"close failed: {exc!r}")
            self.sink.closed(self.name)

    def _process(self, msg: Message) -> None:
        partition, offset, value = msg.partition(), msg.offset(), msg.value()
        assert partition is not None and offset is not None and value is not None
        self.sink.processed(self.name, partition, offset, int(value))
        try:
            self.consumer.commit(message=msg, asynchronous=False)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            self.sink.failed(
                self.name, f"commit of {partition}@{offset} failed: {error.name()} {error.str()}"
            )


class ConfluentMember:
    """A `ConfluentLoop` on a daemon thread: `start()`, then `stop()` for a clean leave."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.loop = ConfluentLoop(*args, **kwargs)
        self.name = self.loop.name
        self._thread = threading.Thread(target=self.loop.run, name=f"member-{self.name}")

    def start(self) -> ConfluentMember:
        self._thread.daemon = True
        self._thread.start()
        return self

    @property
    def member_id(self) -> str | None:
        return self.loop.member_id

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, limit_s: float = SETTLE_LIMIT_S) -> None:
        """Ask the loop to stop and wait until close() has returned (LeaveGroup sent)."""
        self.loop.request_stop()
        self.join(limit_s)

    def join(self, limit_s: float = SETTLE_LIMIT_S) -> None:
        self._thread.join(limit_s)
        if self._thread.is_alive():
            raise AssertionError(f"member {self.name} did not close within {limit_s:.0f} s")


# --------------------------------------------------------------------------- subprocess member


class _JsonLinesSink:
    """EventSink that writes one JSON object per line to a stream (the child's stdout)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._lock = threading.Lock()

    def _emit(self, **event: Any) -> None:
        with self._lock:
            self.out.write(json.dumps(event) + "\n")
            self.out.flush()

    def assigned(self, member: str, partitions: Iterable[int]) -> None:
        self._emit(kind="assign", partitions=list(partitions))

    def revoked(self, member: str, partitions: Iterable[int]) -> None:
        self._emit(kind="revoke", partitions=list(partitions))

    def lost(self, member: str, partitions: Iterable[int]) -> None:
        self._emit(kind="lost", partitions=list(partitions))

    def processed(self, member: str, partition: int, offset: int, msg_id: int) -> None:
        self._emit(kind="processed", partition=partition, offset=offset, id=msg_id)

    def failed(self, member: str, what: str) -> None:
        self._emit(kind="failed", what=what)

    def closed(self, member: str) -> None:
        self._emit(kind="closed")


class SubprocessMember:
    """A confluent-kafka member in a child process whose events feed a `GroupLog`.

    `kill()` SIGKILLs it: no LeaveGroup, no final commit; the coordinator only learns of it
    when its session expires. Drive it from the test's thread.
    """

    def __init__(
        self,
        name: str,
        bootstrap: str,
        group: str,
        topic: str,
        sink: GroupLog,
        config: Mapping[str, Any] | None = None,
        stderr_path: Path | None = None,
    ) -> None:
        self.name = name
        self.sink = sink
        self.argv = [
            sys.executable,
            "-m",
            "helpers.groups",
            "--bootstrap",
            bootstrap,
            "--group",
            group,
            "--topic",
            topic,
            "--name",
            name,
            "--config",
            json.dumps(dict(config or {})),
        ]
        self.stderr_path = stderr_path
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> SubprocessMember:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(TESTS_DIR), env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        stderr: IO[bytes] | int = subprocess.DEVNULL
        if self.stderr_path is not None:
            stderr = open(self.stderr_path, "ab")  # the child process inherits it
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
                text=True,
            )
        finally:
            if not isinstance(stderr, int):
                stderr.close()
        self._reader = threading.Thread(
            target=self._pump, name=f"subprocess-member-{self.name}", daemon=True
        )
        self._reader.start()
        return self

    def _pump(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by SIGKILL
            kind = event.get("kind")
            if kind == "assign":
                self.sink.assigned(self.name, event["partitions"])
            elif kind == "revoke":
                self.sink.revoked(self.name, event["partitions"])
            elif kind == "lost":
                self.sink.lost(self.name, event["partitions"])
            elif kind == "processed":
                self.sink.processed(self.name, event["partition"], event["offset"], event["id"])
            elif kind == "failed":
                self.sink.failed(self.name, event["what"])
            elif kind == "closed":
                self.sink.closed(self.name)

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def kill(self) -> None:
        """SIGKILL: the member vanishes without leaving the group."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGKILL)
        self._proc.wait(SUBPROCESS_EXIT_S)
        self._join_reader()

    def stop(self) -> None:
        """Close stdin: the child closes its consumer (a clean leave) and exits 0."""
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.close()
        code = self._proc.wait(SUBPROCESS_EXIT_S)
        self._join_reader()
        assert code == 0, f"subprocess member {self.name} exited with {code}"

    def close(self) -> None:
        """Last resort at teardown: make sure the child is gone."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(SUBPROCESS_EXIT_S)
        self._join_reader()

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(5)


def _child_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one confluent-kafka group member")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--config", default="{}")
    args = parser.parse_args(argv)
    sink = _JsonLinesSink(sys.stdout)
    loop = ConfluentLoop(
        args.name, args.bootstrap, args.group, args.topic, sink, json.loads(args.config)
    )

    def wait_for_eof() -> None:
        sys.stdin.read()  # the parent closing our stdin means "leave the group"
        loop.request_stop()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
