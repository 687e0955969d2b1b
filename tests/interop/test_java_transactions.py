"""Transactions through Java: the Java client's transactional producer and a Kafka Streams
word count with processing.guarantee=exactly_once_v2, against our broker and against Kafka.

The programs live in tests/interop/java/ (kafka-clients and kafka-streams from Maven Central,
compiled by conftest's `java_programs`); each prints one `RESULT {json}` line and exits 0
only when everything matched:

* TransactionCheck commit-abort: committed and aborted transactions (two of them carrying
  consumer offsets through sendOffsetsToTransaction), then one left open while a plain
  producer appends behind it; read_committed must see exactly the committed records at their
  offsets, the last stable offset must stop at the open transaction, and the group's
  offsets must be the committed transaction's.
* TransactionCheck fencing: a second producer with the same transactional.id aborts the
  first one's open transaction; the first gets ProducerFencedException (from its commit, or
  from the abort its commit's abortable InvalidProducerEpochException calls for, as with
  Kafka) and none of its records after the fence are visible, or appended at all.
* WordCountEos: lines -> words -> counts. The application is SIGKILLed mid-way, restarted
  on the same state directory, stopped with SIGTERM mid-way, and restarted once more, with
  more lines appended before each start. Then every word's committed count updates must be
  exactly 1, 2, ..., n (caches are off): no update lost, none counted twice across restarts.

The same programs run against Apache Kafka (`reference_kafka`) to prove the programs right.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest
from helpers import kafka_wire as wire
from helpers.broker_process import BrokerFactory

TRANSACTION_CHECK = "metamorphostreams.interop.TransactionCheck"
WORD_COUNT = "metamorphostreams.interop.WordCountEos"
CHECKS = ["commit-abort", "fencing"]
RUN_LIMIT_S = 90.0  # each step inside the programs is bounded (30 s); a run takes ~5 s
# Lines appended before each of the three starts, and how many lines the first two runs
# get through before they are killed / stopped: enough that each ends mid-way.
LINES = (600, 300, 200)
KILL_AFTER_LINES = 200
STOP_AFTER_LINES = 150
PROGRESS_LIMIT_S = 60.0  # a start, a rebalance and 200 lines take ~10 s against Kafka here
STOP_LIMIT_S = 30.0  # Streams' close is bounded at 20 s in the program
VERIFY_WAIT_MS = 60_000
JVM_SIGTERM_EXIT = 143  # 128 + SIGTERM: a JVM that ran its shutdown hooks on SIGTERM
# What a broker must advertise for these programs (API keys).
TRANSACTION_APIS = {
    22: "InitProducerId",
    24: "AddPartitionsToTxn",
    25: "AddOffsetsToTxn",
    26: "EndTxn",
    28: "TxnOffsetCommit",
}

# Our broker sized as the reference one is (helpers/reference_kafka.py): internal topics of 3
# partitions rather than 50, and no 3 s wait for more members before a group's first
# rebalance (which would slow each of the word count's three starts).
OUR_SETTINGS = {
    "offsets.topic.num.partitions": 3,
    "transaction.state.log.num.partitions": 3,
    "group.initial.rebalance.delay.ms": 0,
}

pytestmark = pytest.mark.timeout(240)


def _result(stdout: str) -> dict[str, Any] | None:
    """The program's `RESULT {json}` line, parsed (the last one), or None."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            parsed: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
            return parsed
    return None


def _report(what: str, done: subprocess.CompletedProcess[str]) -> str:
    return (
        f"{what} exited {done.returncode}\n--- stdout:\n{done.stdout[-6000:]}"
        f"\n--- stderr (tail):\n{done.stderr[-4000:]}"
    )


def _assert_passed(what: str, done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    result = _result(done.stdout)
    assert result is not None, "no RESULT line\n" + _report(what, done)
    assert result["ok"] and done.returncode == 0, _report(what, done)
    return result


def _require_transaction_apis(bootstrap: str) -> None:
    """Fails at once (rather than after the programs' timeouts) on a broker without them."""
    advertised = wire.api_versions(bootstrap)
    missing = [name for key, name in TRANSACTION_APIS.items() if key not in advertised]
    assert not missing, f"the broker does not advertise {', '.join(missing)}"


# --------------------------------------------------------------------- the transactional producer


def _transaction_check(java_programs: list[str], bootstrap: str, check: str) -> None:
    topic = f"java-txn-{check}-{uuid.uuid4().hex[:10]}"
    argv = [*java_programs, TRANSACTION_CHECK, "--bootstrap", bootstrap, "--topic", topic]
    done = subprocess.run(
        [*argv, "--check", check],
        capture_output=True,
        text=True,
        timeout=RUN_LIMIT_S,
        check=False,
    )
    result = _assert_passed(f"TransactionCheck {check}", done)
    if check == "fencing":
        assert "ProducerFencedException" in result["commit_error"] + result["abort_error"]


@pytest.mark.parametrize("check", CHECKS)
def test_transactional_producer_against_kafka(
    request: pytest.FixtureRequest, java_programs: list[str], check: str
) -> None:
    """The control: the program itself must pass against Apache Kafka."""
    kafka = request.getfixturevalue("reference_kafka")
    _transaction_check(java_programs, kafka.bootstrap, check)


@pytest.mark.parametrize("check", CHECKS)
def test_transactional_producer_against_our_broker(
    broker_factory: BrokerFactory, java_programs: list[str], check: str
) -> None:
    broker = broker_factory(OUR_SETTINGS)
    _require_transaction_apis(broker.bootstrap)
    _transaction_check(java_programs, broker.bootstrap, check)


# ------------------------------------------------------------------- Kafka Streams, exactly once


class _StreamsRun:
    """One run of WordCountEos: a JVM in its own session, its stdout watched for progress
    and copied to `<log>.out` with seconds since its start (stderr to `<log>.err`).
    Drive it from the test's thread."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.argv = argv
        self.out_path = log.with_suffix(".out")
        self.err_path = log.with_suffix(".err")
        self.produced = False  # its lines are in the input topic (`produced lines ...`)
        self.lines = 0  # the highest `progress lines=N` printed so far
        self._stdout: list[str] = []
        self._changed = threading.Condition()
        self._started = time.monotonic()
        with open(self.err_path, "wb") as err:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                start_new_session=True,
            )
        self._pump = threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True)
        self._pump.start()

    def _read(self, stream: IO[str] | None) -> None:
        if stream is None:
            return
        with open(self.out_path, "w", encoding="utf-8") as copy:
            for line in stream:
                copy.write(f"{time.monotonic() - self._started:7.2f} {line}")
                copy.flush()
                with self._changed:
                    self._stdout.append(line)
                    if line.startswith("produced lines "):
                        self.produced = True
                    elif line.startswith("progress lines="):
                        self.lines = max(self.lines, int(line.split("=", 1)[1]))
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_lines(self, lines: int) -> None:
        """Blocks until the run has put `lines` lines through (committed or not)."""
        self._wait(lambda: self.lines >= lines, f"put {lines} lines through")

    def wait_for_produced(self) -> None:
        """Blocks until the run's new lines are in the input topic."""
        self._wait(lambda: self.produced, "append its lines")

    def _wait(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + PROGRESS_LIMIT_S
        with self._changed:
            while not done():
                if self._proc.poll() is not None and not self._pump.is_alive():
                    raise AssertionError(f"WordCountEos exited early\n{self.diagnostics()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"WordCountEos did not {what} within {PROGRESS_LIMIT_S:.0f} s "
                        f"(lines so far: {self.lines})\n{self.diagnostics()}"
                    )
                self._changed.wait(min(left, 0.5))

    def kill(self) -> None:
        """SIGKILL: no close, no commit, an open transaction left behind."""
        os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait(10)
        self._pump.join(5)

    def stop(self) -> None:
        """SIGTERM: Streams closes (commits, leaves the group); the JVM must exit cleanly."""
        self._proc.send_signal(signal.SIGTERM)
        try:
            code = self._proc.wait(STOP_LIMIT_S)
        except subprocess.TimeoutExpired:
            self.close()
            raise AssertionError(
                f"WordCountEos did not stop within {STOP_LIMIT_S:.0f} s\n{self.diagnostics()}"
            ) from None
        self._pump.join(5)
        assert code in (0, JVM_SIGTERM_EXIT), f"exit {code} on SIGTERM\n{self.diagnostics()}"

    def close(self) -> None:
        """Makes sure the JVM is gone; never raises."""
        if self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._proc.wait(10)
        self._pump.join(5)

    def diagnostics(self) -> str:
        with self._changed:
            out = "".join(self._stdout)
        try:
            err = self.err_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            err = ""
        return f"--- stdout:\n{out[-4000:]}\n--- stderr ({self.err_path}, tail):\n{err[-4000:]}"


def _word_count_across_restarts(java_programs: list[str], bootstrap: str, tmp_path: Path) -> None:
    name = f"wordcount-{uuid.uuid4().hex[:10]}"
    topics = ["--input", f"{name}-lines", "--output", f"{name}-counts"]
    state_dir = tmp_path / "streams-state"  # kept across runs, as a restarted instance would
    runs: list[_StreamsRun] = []

    def start(first_line: int, count: int) -> _StreamsRun:
        argv = [*java_programs, WORD_COUNT, "run", "--bootstrap", bootstrap, "--app-id", name]
        argv += [*topics, "--state-dir", str(state_dir)]
        argv += ["--produce-from", str(first_line), "--produce-count", str(count)]
        run = _StreamsRun(argv, tmp_path / f"wordcount-run-{len(runs) + 1}.log")
        runs.append(run)
        return run

    try:
        first = start(0, LINES[0])
        first.wait_for_lines(KILL_AFTER_LINES)
        first.kill()
        second = start(LINES[0], LINES[1])
        second.wait_for_lines(STOP_AFTER_LINES)
        second.stop()
        third = start(LINES[0] + LINES[1], LINES[2])
        third.wait_for_produced()  # the checker takes the input as it finds it for the truth
        verify = [*java_programs, WORD_COUNT, "verify", "--bootstrap", bootstrap, *topics]
        done = subprocess.run(
            [*verify, "--lines", str(sum(LINES)), "--wait-ms", str(VERIFY_WAIT_MS)],
            capture_output=True,
            text=True,
            timeout=RUN_LIMIT_S,
            check=False,
        )
        third.stop()
    finally:
        for run in runs:
            run.close()
    runs_log = "\n".join(f"=== run {i + 1}\n{run.diagnostics()}" for i, run in enumerate(runs))
    result = _result(done.stdout)
    assert result is not None, "no RESULT line\n" + _report("verify", done) + "\n" + runs_log
    assert result["ok"] and done.returncode == 0, _report("verify", done) + "\n" + runs_log
    assert result["lines"] == sum(LINES)
    assert result["count_updates"] == result["word_occurrences"]


def test_streams_exactly_once_word_count_against_kafka(
    request: pytest.FixtureRequest, java_programs: list[str], tmp_path: Path
) -> None:
    """The control: the program itself must pass against Apache Kafka."""
    kafka = request.getfixturevalue("reference_kafka")
    _word_count_across_restarts(java_programs, kafka.bootstrap, tmp_path)


# Beyond transactions, this needs compacted topics: Streams creates its changelog with
# cleanup.policy=compact, and fails at start on a broker that refuses it.
def test_streams_exactly_once_word_count_against_our_broker(
    broker_factory: BrokerFactory, java_programs: list[str], tmp_path: Path
) -> None:
    broker = broker_factory(OUR_SETTINGS)
    _require_transaction_apis(broker.bootstrap)
    _word_count_across_restarts(java_programs, broker.bootstrap, tmp_path)
