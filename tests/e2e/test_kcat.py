"""kcat 1.7.1 (Debian, librdkafka 2.0.2) against the broker.

Old librdkafka is the strict one here: it mis-parses default-valued tagged fields and needs
the exact-version probes (see ../shared/kafka-protocol/client-quirks.md), so a broker that
passes confluent-kafka can still fail these.
"""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
from helpers.broker_process import BrokerFactory, BrokerProcess, require_tool
from helpers.confluent import create_topic

LINES = 10_000
KCAT_TIMEOUT_S = 90  # a subprocess bound; librdkafka moves 10k small lines in well under that


def _kcat(kcat: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    argv = [kcat, *args]
    try:
        result = subprocess.run(argv, input=stdin, capture_output=True, timeout=KCAT_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"{' '.join(argv)} did not finish in {KCAT_TIMEOUT_S} s; stderr:\n"
            f"{(exc.stderr or b'').decode(errors='replace')[-3000:]}"
        ) from None
    return result


def _explain(result: subprocess.CompletedProcess[bytes]) -> str:
    return (
        f"$ {' '.join(map(str, result.args))}\nexit {result.returncode}\n"
        f"stderr:\n{result.stderr.decode(errors='replace')[-3000:]}"
    )


def _lines() -> list[bytes]:
    return [f"line {i:05d} {'x' * (i % 23)}".encode() for i in range(LINES)]


def _metadata(kcat: str, bootstrap: str) -> dict:
    result = _kcat(kcat, "-b", bootstrap, "-L", "-J", "-m", "30")
    assert result.returncode == 0, _explain(result)
    return json.loads(result.stdout)


@pytest.mark.timeout(60)
def test_list_metadata(broker: BrokerProcess) -> None:
    kcat = require_tool("kcat")
    topic = f"kcat-meta-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, 2)

    metadata = _metadata(kcat, broker.bootstrap)
    assert [(b["id"], b["name"]) for b in metadata["brokers"]] == [
        (broker.broker_id, f"{broker.host}:{broker.port}")
    ], metadata["brokers"]
    topics = {t["topic"]: t for t in metadata["topics"]}
    assert topic in topics, sorted(topics)
    partitions = topics[topic]["partitions"]
    assert sorted(p["partition"] for p in partitions) == [0, 1]
    assert all(p["leader"] == broker.broker_id for p in partitions), partitions

    # The human-readable listing too (what people actually look at).
    plain = _kcat(kcat, "-b", broker.bootstrap, "-L", "-t", topic, "-m", "30")
    assert plain.returncode == 0, _explain(plain)
    text = plain.stdout.decode()
    assert f"broker {broker.broker_id} at {broker.host}:{broker.port}" in text, text
    assert f'topic "{topic}" with 2 partitions' in text, text


def _produce_and_read_back(kcat: str, bootstrap: str, topic: str) -> None:
    lines = _lines()
    produced = _kcat(kcat, "-b", bootstrap, "-P", "-t", topic, stdin=b"\n".join(lines) + b"\n")
    assert produced.returncode == 0, _explain(produced)
    assert b"ERROR" not in produced.stderr and b"Failed" not in produced.stderr, _explain(produced)

    consumed = _kcat(kcat, "-b", bootstrap, "-C", "-t", topic, "-e", "-o", "beginning", "-q")
    assert consumed.returncode == 0, _explain(consumed)
    got = consumed.stdout.split(b"\n")
    assert got[-1] == b"", "output does not end with a newline"
    got = got[:-1]
    assert len(got) == LINES, f"read back {len(got)} lines, produced {LINES}\n{_explain(consumed)}"
    if got != lines:
        first = next(i for i, (a, b) in enumerate(zip(got, lines, strict=True)) if a != b)
        raise AssertionError(f"line {first} differs: got {got[first]!r}, sent {lines[first]!r}")


@pytest.mark.timeout(180)
def test_produce_then_consume_in_order_created_topic(broker: BrokerProcess) -> None:
    kcat = require_tool("kcat")
    topic = f"kcat-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, 1)
    _produce_and_read_back(kcat, broker.bootstrap, topic)


@pytest.mark.timeout(180)
def test_produce_then_consume_in_order_auto_created_topic(broker_factory: BrokerFactory) -> None:
    kcat = require_tool("kcat")
    broker = broker_factory({"auto.create.topics.enable": "true", "num.partitions": 1})
    topic = f"kcat-auto-{uuid.uuid4().hex[:8]}"
    _produce_and_read_back(kcat, broker.bootstrap, topic)
    metadata = _metadata(kcat, broker.bootstrap)
    (described,) = [t for t in metadata["topics"] if t["topic"] == topic]
    assert len(described["partitions"]) == 1


@pytest.mark.timeout(60)
def test_consume_from_beyond_the_log_end_resets_and_ends(broker: BrokerProcess) -> None:
    """An out-of-range start offset: librdkafka must read the OFFSET_OUT_OF_RANGE answer (an
    errored partition carries empty records, never null, which it cannot parse), reset to
    the end (auto.offset.reset's default) and, with -e, exit there."""
    kcat = require_tool("kcat")
    topic = f"kcat-range-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, 1)
    produced = _kcat(kcat, "-b", broker.bootstrap, "-t", topic, "-P", stdin=b"a\nb\nc\nd\ne\n")
    assert produced.returncode == 0, _explain(produced)

    result = _kcat(kcat, "-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "10", "-e")
    assert result.returncode == 0, _explain(result)
    assert result.stdout == b"", _explain(result)
    stderr = result.stderr.decode(errors="replace")
    assert "parse failure" not in stderr.lower() and "MessageSetSize" not in stderr, stderr
