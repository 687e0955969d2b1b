"""`mms produce --transactional-id` and `mms consume --isolation-level`, against the
reference Apache Kafka (skipped without Java or the jars, failed with CI=true) and against
our broker."""

from __future__ import annotations

import json
import time
import uuid

from helpers.reference_kafka import ReferenceKafka, reference_kafka

from metamorphostreams.client import Admin, TopicPartition
from metamorphostreams.client.admin import OffsetSpec
from metamorphostreams.pytest_plugin import BrokerThread

from .conftest import one_line_error
from .runner import invoke_mms

__all__ = ["reference_kafka"]


END_TXN = 26
SETTLE_LIMIT_S = 30.0


def _mms(bootstrap: str, *args: str, stdin: str | None = None, ok: bool = True) -> object:
    result = invoke_mms(*args, "-b", bootstrap, stdin=stdin)
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def _settle(bootstrap: str, topic: str, partitions: int) -> None:
    """Wait until no transaction is open (its markers follow EndTxn's answer)."""
    specs: dict[TopicPartition, OffsetSpec] = {
        TopicPartition(topic, p): "latest" for p in range(partitions)
    }
    deadline = time.monotonic() + SETTLE_LIMIT_S
    with Admin({"bootstrap.servers": bootstrap}) as admin:
        while admin.list_offsets(specs, read_committed=True) != admin.list_offsets(specs):
            assert time.monotonic() < deadline, "transaction markers never arrived"
            time.sleep(0.05)


def _consume(bootstrap: str, topic: str, isolation: str) -> list[dict[str, object]]:
    result = invoke_mms(
        "consume",
        topic,
        "--from-beginning",
        "-e",
        "--json",
        "--isolation-level",
        isolation,
        "-b",
        bootstrap,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def transactional_produce_round_trip(bootstrap: str) -> None:
    """All input in one committed transaction; on a bad line the transaction is aborted,
    the command fails, and nothing of that input is visible to read_committed."""
    topic = f"cli-txn-{uuid.uuid4().hex[:8]}"
    _mms(bootstrap, "topic", "create", topic, "-p", "2")
    lines = "".join(f"k{i}:v{i}\n" for i in range(10))
    tid = f"cli-{uuid.uuid4().hex[:8]}"
    produced = invoke_mms(
        "produce", topic, "-K", ":", "--transactional-id", tid, "-b", bootstrap, stdin=lines
    )
    assert produced.returncode == 0, produced.stderr
    assert f"produced 10 records to {topic} in one transaction ({tid})" in produced.stderr
    _settle(bootstrap, topic, 2)
    committed = _consume(bootstrap, topic, "read_committed")
    assert sorted(str(r["value"]) for r in committed) == sorted(f"v{i}" for i in range(10))
    assert all(r["key"] == "k" + str(r["value"])[1:] for r in committed)

    bad = "".join(f"x{i}:bad{i}\n" for i in range(5)) + "no separator here\n"
    failed = invoke_mms(
        "produce", topic, "-K", ":", "--transactional-id", tid, "-b", bootstrap, stdin=bad
    )
    one_line_error(failed, "line 6 has no key separator")
    _settle(bootstrap, topic, 2)
    assert len(_consume(bootstrap, topic, "read_committed")) == 10
    uncommitted = _consume(bootstrap, topic, "read_uncommitted")
    # The aborted records may have reached the log before the bad line (or not); no
    # control record is ever printed.
    values = {str(r["value"]) for r in uncommitted}
    assert values - {f"bad{i}" for i in range(5)} == {f"v{i}" for i in range(10)}


def test_reference_kafka(reference_kafka: ReferenceKafka) -> None:
    transactional_produce_round_trip(reference_kafka.bootstrap)


def test_our_broker(cli_broker: BrokerThread) -> None:
    with Admin({"bootstrap.servers": cli_broker.bootstrap}) as admin:
        assert admin.supports(END_TXN), "the broker does not advertise EndTxn"
    transactional_produce_round_trip(cli_broker.bootstrap)


def test_isolation_level_choices(cli_broker: BrokerThread) -> None:
    result = invoke_mms("consume", "t", "--isolation-level", "committed", "-b", "x:1")
    assert result.returncode != 0 and "invalid choice" in result.stderr
    topic = "plain"
    _mms(cli_broker.bootstrap, "topic", "create", topic, "-p", "1")
    _mms(cli_broker.bootstrap, "produce", topic, stdin="a\nb\n")
    # Without transactions both levels read the same records.
    for isolation in ("read_committed", "read_uncommitted"):
        values = [r["value"] for r in _consume(cli_broker.bootstrap, topic, isolation)]
        assert values == ["a", "b"]
