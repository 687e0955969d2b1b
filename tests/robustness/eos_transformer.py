"""Exactly-once consume-transform-produce with confluent-kafka, as a program of its own so a
test can SIGKILL it (tests/robustness/test_exactly_once_crashes.py runs it).

    python eos_transformer.py --bootstrap H:P --input IN --output OUT --group G
        --transactional-id T --end-offsets 16667,16667,16666 [--chunk 250]

A group member (static membership, read_committed, no auto commit) and a transactional
producer with a fixed transactional.id. Each transaction: up to --chunk input records, each
copied to the output partition of the same number as ``b"<partition>:<offset>:" + value``,
then the consumed positions go in with send_offsets_to_transaction and the transaction
commits.

Errors: a retriable one retries the call; one that needs an abort aborts the transaction and
seeks back to where it began (a rebalance aborts the open transaction too: the new
assignment starts from the committed offsets); a fatal one, or no committed progress within
--stall-s, exits non-zero and the caller restarts the program. It exits 0 once the group's
committed offsets reach --end-offsets on every input partition.

stdout, one line per event, flushed: ``open N`` once a transaction's N records are on the
broker, before its commit (then --hold-ms of sleep); ``committed P:OFF ...`` after every
commit (the offsets it committed); ``aborted REASON``; ``done``. Diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

CALL_TIMEOUT_S = 10.0  # one transactional call; retried while the error says retriable
IDLE_CHECK_S = 1.0  # with nothing to consume, ask the coordinator whether all is committed

EXIT_FATAL = 2  # a fatal error (fenced, ...): restart the program
EXIT_STALLED = 3  # no committed progress within --stall-s
EXIT_REWIND = 4  # could not seek back after an abort

T = TypeVar("T")


class Restart(Exception):
    """Give up this incarnation: exit with ``code``; the caller starts a new one."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def warn(line: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {line}\n")
    sys.stderr.flush()


def kafka_error(exc: KafkaException) -> KafkaError:
    err = exc.args[0]
    assert isinstance(err, KafkaError), exc
    return err


class Transformer:
    """The loop and its transaction state. Not thread-safe (librdkafka calls the rebalance
    callbacks from inside consume(), on this thread)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ends: dict[int, int] = {
            p: int(end) for p, end in enumerate(args.end_offsets.split(","))
        }
        common: dict[str, Any] = {
            "bootstrap.servers": args.bootstrap,
            "broker.address.family": "v4",
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            # librdkafka >= 2.10 re-bootstraps when every broker is down; with a transaction
            # open that can leave send_offsets_to_transaction waiting forever on a
            # decommissioned broker handle. One broker on a fixed address needs no re-bootstrap.
            "metadata.recovery.strategy": "none",
            **({"debug": args.debug} if args.debug else {}),
        }
        self.consumer = Consumer(
            {
                **common,
                "group.id": args.group,
                "group.instance.id": f"{args.transactional_id}-member",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                # Longer than a broker restart: librdkafka's own session timeout during an
                # outage resets the member id, and its next heartbeat, with an empty member id
                # and our group.instance.id, is fenced (FENCED_INSTANCE_ID, as in Kafka): a
                # fatal consumer error. A killed transformer is replaced at once anyway
                # (static membership), whatever this says.
                "session.timeout.ms": 15000,
                "heartbeat.interval.ms": 500,
                "fetch.wait.max.ms": 50,
            }
        )
        self.producer = Producer(
            {
                **common,
                "transactional.id": args.transactional_id,
                "transaction.timeout.ms": args.transaction_timeout_ms,
                "message.timeout.ms": args.transaction_timeout_ms,
                "linger.ms": 5,
                "retry.backoff.ms": 50,
            }
        )
        self.in_txn = False
        self.txn_records = 0
        self.txn_start: dict[int, int] = {}  # partition -> first offset consumed in the txn
        self.txn_next: dict[int, int] = {}  # partition -> offset after the last one consumed
        self.committed: dict[int, int] = {}  # what this incarnation knows is committed
        self.last_progress = time.monotonic()

    # -- calls with librdkafka's error classes --------------------------------------------

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run a transactional call, retrying while its error is retriable; an error that
        needs an abort propagates (KafkaException), a fatal one ends this incarnation."""
        while True:
            try:
                return fn()
            except KafkaException as exc:
                err = kafka_error(exc)
                if err.fatal():
                    raise Restart(EXIT_FATAL, f"{what}: fatal {err.name()}: {err.str()}") from exc
                if err.txn_requires_abort():
                    raise
                if err.retriable():
                    warn(f"{what}: retriable {err.name()}: {err.str()}; retrying")
                    self.check_stall()
                    continue
                raise Restart(EXIT_FATAL, f"{what}: {err.name()}: {err.str()}") from exc

    def check_stall(self) -> None:
        stalled = time.monotonic() - self.last_progress
        if stalled > self.args.stall_s:
            raise Restart(EXIT_STALLED, f"no committed progress for {stalled:.0f} s")

    def watchdog(self) -> None:
        """Exit when no commit succeeded for --stall-s, even from inside a librdkafka call
        that never returns (they release the GIL): the caller restarts the program."""
        while True:
            time.sleep(0.5)
            stalled = time.monotonic() - self.last_progress
            if stalled > self.args.stall_s:
                warn(f"watchdog: no committed progress for {stalled:.0f} s; stacks:")
                faulthandler.dump_traceback(sys.stderr)
                say(f"exit {EXIT_STALLED} stalled")
                os._exit(EXIT_STALLED)

    # -- the transaction ------------------------------------------------------------------

    def begin(self) -> None:
        self.producer.begin_transaction()
        self.in_txn = True
        self.txn_records = 0
        self.txn_start.clear()
        self.txn_next.clear()

    def abort(self, reason: str, *, rewind: bool) -> None:
        """Abort the open transaction; with ``rewind``, seek back to where it began."""
        if not self.in_txn:
            return
        say(f"aborted {reason}")
        warn(f"aborting ({reason}) after {self.txn_records} records")
        while True:
            try:
                self.call(
                    "abort_transaction", lambda: self.producer.abort_transaction(CALL_TIMEOUT_S)
                )
                break
            except KafkaException as exc:
                # An abort that itself needs an abort: librdkafka says retry the abort.
                warn(f"abort_transaction: {kafka_error(exc).str()}; retrying")
                self.check_stall()
        self.in_txn = False
        if rewind:
            for partition, offset in sorted(self.txn_start.items()):
                try:
                    self.consumer.seek(TopicPartition(self.args.input, partition, offset))
                except KafkaException as exc:
                    raise Restart(
                        EXIT_REWIND, f"seek {partition}:{offset}: {kafka_error(exc).str()}"
                    ) from exc
        self.txn_start.clear()
        self.txn_next.clear()

    def hold(self) -> None:
        """The transaction's records are on the broker, not committed: say so, and with
        --hold-ms stay in that state a moment, so that a kill can aim at it."""
        if self.producer.flush(CALL_TIMEOUT_S) == 0:
            say(f"open {self.txn_records}")
            if self.args.hold_ms:
                time.sleep(self.args.hold_ms / 1000)

    def commit(self) -> None:
        offsets = [
            TopicPartition(self.args.input, p, offset)
            for p, offset in sorted(self.txn_next.items())
        ]
        try:
            self.call(
                "send_offsets_to_transaction",
                lambda: self.producer.send_offsets_to_transaction(
                    offsets, self.consumer.consumer_group_metadata(), CALL_TIMEOUT_S
                ),
            )
            self.call(
                "commit_transaction", lambda: self.producer.commit_transaction(CALL_TIMEOUT_S)
            )
        except KafkaException as exc:
            err = kafka_error(exc)
            self.abort(f"{err.name()}: {err.str()}", rewind=True)
            return
        self.in_txn = False
        self.committed.update(self.txn_next)
        self.last_progress = time.monotonic()
        say("committed " + " ".join(f"{p}:{o}" for p, o in sorted(self.txn_next.items())))
        self.txn_start.clear()
        self.txn_next.clear()

    # -- rebalances -----------------------------------------------------------------------

    def on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        warn(f"revoked {[tp.partition for tp in partitions]}")
        # The next owner starts from the committed offsets: what this transaction consumed
        # must not commit.
        self.abort("revoked", rewind=False)

    def on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        warn(f"assigned {[tp.partition for tp in partitions]}")

    # -- the loop -------------------------------------------------------------------------

    def done(self) -> bool:
        return all(self.committed.get(p, -1) >= end for p, end in self.ends.items())

    def refresh_committed(self) -> None:
        try:
            found = self.consumer.committed(
                [TopicPartition(self.args.input, p) for p in self.ends], timeout=CALL_TIMEOUT_S
            )
        except KafkaException as exc:
            warn(f"committed(): {kafka_error(exc).str()}")
            return
        for tp in found:
            if tp.error is None and tp.offset >= 0:
                self.committed[tp.partition] = max(self.committed.get(tp.partition, -1), tp.offset)

    def run(self) -> None:
        threading.Thread(target=self.watchdog, name="watchdog", daemon=True).start()
        self.call("init_transactions", lambda: self.producer.init_transactions(CALL_TIMEOUT_S))
        self.consumer.subscribe(
            [self.args.input],
            on_assign=self.on_assign,
            on_revoke=self.on_revoke,
            on_lost=self.on_revoke,
        )
        self.last_progress = time.monotonic()
        idle_since = time.monotonic()
        while not self.done():
            self.check_stall()
            room = self.args.chunk - self.txn_records if self.in_txn else self.args.chunk
            messages = self.consumer.consume(room, timeout=0.2)
            records = [m for m in messages if self.good(m)]
            if records:
                idle_since = time.monotonic()
                if not self.in_txn:
                    self.begin()
                for msg in records:
                    self.transform(msg)
                self.producer.poll(0)
            if self.in_txn and (self.txn_records >= self.args.chunk or not records):
                self.hold()
                self.commit()
            elif not self.in_txn and time.monotonic() - idle_since > IDLE_CHECK_S:
                self.refresh_committed()
                idle_since = time.monotonic()
        say("done")

    def good(self, msg: Message) -> bool:
        err = msg.error()
        if err is None:
            return True
        if err.fatal() or err.code() == KafkaError._FATAL:
            # A fatal consumer error (a fenced static member, ...) leaves the consumer unusable.
            raise Restart(EXIT_FATAL, f"consumer: fatal {err.name()}: {err.str()}")
        warn(f"consumer: {err.name()}: {err.str()}")
        return False

    def transform(self, msg: Message) -> None:
        partition, offset, value = msg.partition(), msg.offset(), msg.value()
        assert partition is not None and offset is not None and value is not None
        expected = self.txn_next.get(partition)
        if expected is not None and offset != expected:
            warn(f"input {partition}: offset {offset} after {expected - 1} in one transaction")
        self.txn_start.setdefault(partition, offset)
        self.txn_next[partition] = offset + 1
        out = b"%d:%d:" % (partition, offset) + value
        while True:
            try:
                self.producer.produce(self.args.output, out, partition=partition)
                break
            except BufferError:
                self.producer.poll(0.05)
        self.txn_records += 1

    def close(self) -> None:
        try:
            self.consumer.close()
        except KafkaException as exc:
            warn(f"consumer close: {kafka_error(exc).str()}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--transactional-id", required=True)
    parser.add_argument("--end-offsets", required=True, help="input end offsets, p0,p1,...")
    parser.add_argument("--chunk", type=int, default=250, help="records per transaction")
    parser.add_argument("--transaction-timeout-ms", type=int, default=20_000)
    parser.add_argument("--hold-ms", type=int, default=0, help="pause before each commit")
    parser.add_argument("--debug", default="", help="librdkafka debug contexts")
    parser.add_argument("--stall-s", type=float, default=20.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1`: where is it stuck?
    transformer = Transformer(parse_args(argv))
    try:
        transformer.run()
    except Restart as exc:
        warn(f"exiting {exc.code}: {exc}")
        say(f"exit {exc.code} {exc}")
        # Not through interpreter teardown: destroying a producer stuck in a transaction
        # against a dead broker can block; the next incarnation fences this one anyway.
        os._exit(exc.code)
    transformer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
