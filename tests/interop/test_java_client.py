"""The Java client (kafka-clients 4.x) against our broker, and against Apache Kafka.

tests/interop/java/ holds the program (JavaClientCheck): AdminClient create/list/describe,
3,000 keyed records from idempotent acks=all producers cycling none/gzip/snappy/lz4/zstd,
then a consumer reading everything back and checking keys, values, headers, timestamps,
offsets and order. It exits 0 only if everything matched.

It is compiled with javac (conftest's `java_programs`) against the jars that
tools/reference-kafka/fetch.sh puts in tests/interop/java/target/lib (Maven Central, once),
and recompiled only when a source changes. The same program runs against Kafka to prove the
program right.

Consumer modes: `assign` (assign() + seekToBeginning, no group coordinator), and the group
modes (subscribe() in a classic or a KIP-848 group, then commitSync). A group mode runs
against our broker only once it advertises the APIs that mode needs, so these tests switch
themselves on when groups land.
"""

from __future__ import annotations

import subprocess
import uuid

import pytest
from helpers import kafka_wire as wire

MAIN_CLASS = "metamorphostreams.interop.JavaClientCheck"
RUN_LIMIT_S = 150.0  # the program bounds each step; a JVM run takes ~5 s here

MODES: dict[str, list[str]] = {
    "assign": [],
    "group-classic": ["--group-protocol", "classic"],
    "group-consumer": ["--group-protocol", "consumer"],
}
# What a broker must advertise for each mode (API keys).
NEEDED_APIS: dict[str, dict[int, str]] = {
    "assign": {},
    "group-classic": {
        8: "OffsetCommit",
        9: "OffsetFetch",
        10: "FindCoordinator",
        11: "JoinGroup",
        12: "Heartbeat",
        13: "LeaveGroup",
        14: "SyncGroup",
    },
    "group-consumer": {
        8: "OffsetCommit",
        9: "OffsetFetch",
        10: "FindCoordinator",
        68: "ConsumerGroupHeartbeat",
    },
}

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="session")
def java_client_check(java_programs: list[str]) -> list[str]:
    """The command that runs JavaClientCheck (compiled by conftest's `java_programs`)."""
    return [*java_programs, MAIN_CLASS]


def _run(command: list[str], bootstrap: str, mode: str) -> subprocess.CompletedProcess[str]:
    argv = [*command, "--bootstrap", bootstrap, "--topic", f"java-{uuid.uuid4().hex[:10]}"]
    if mode != "assign":
        argv += ["--group", f"java-group-{uuid.uuid4().hex[:10]}", *MODES[mode]]
    return subprocess.run(argv, capture_output=True, text=True, timeout=RUN_LIMIT_S, check=False)


def _report(done: subprocess.CompletedProcess[str]) -> str:
    return (
        f"JavaClientCheck exited {done.returncode}\n--- stdout:\n{done.stdout[-6000:]}"
        f"\n--- stderr (tail):\n{done.stderr[-4000:]}"
    )


@pytest.mark.parametrize("mode", list(MODES))
def test_java_client_against_our_broker(
    request: pytest.FixtureRequest, java_client_check: list[str], mode: str
) -> None:
    broker = request.getfixturevalue("broker")
    advertised = wire.api_versions(broker.bootstrap)
    missing = [name for key, name in NEEDED_APIS[mode].items() if key not in advertised]
    if missing:
        pytest.skip(
            f"our broker does not advertise {', '.join(missing)} yet; this mode switches on "
            "by itself once it does"
        )
    done = _run(java_client_check, broker.bootstrap, mode)
    assert done.returncode == 0, _report(done)
    assert "OK:" in done.stdout, _report(done)


@pytest.mark.parametrize("mode", list(MODES))
def test_java_client_against_kafka(
    request: pytest.FixtureRequest, java_client_check: list[str], mode: str
) -> None:
    """The control: the program itself must pass against Apache Kafka."""
    kafka = request.getfixturevalue("reference_kafka")
    done = _run(java_client_check, kafka.bootstrap, mode)
    assert done.returncode == 0, _report(done)
    assert "OK:" in done.stdout, _report(done)
