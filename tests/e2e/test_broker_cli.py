"""The broker's command-line contract, which every other e2e test builds on.

`mms broker --data-dir DIR [--host H] [--port P] [--broker-id N] [--config FILE]
[--set key=value ...]` prints a line containing `ready` once it accepts connections and
exits 0 on SIGTERM/SIGINT.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from helpers import kafka_wire as wire
from helpers.broker_process import (
    BrokerFactory,
    console_script,
    launcher_overridden,
    module_launcher,
)

AUTO_CREATE_LIMIT_S = 20.0  # bound on an auto-created topic getting a leader

mms_only = pytest.mark.skipif(
    launcher_overridden(), reason="checks the mms command itself, not the broker behind it"
)


def _auto_created_partitions(bootstrap: str, topic: str) -> int:
    """Ask for `topic` with auto-creation allowed until it has a leader; its partition count."""
    deadline = time.monotonic() + AUTO_CREATE_LIMIT_S
    while True:
        response = wire.metadata(bootstrap, [topic], version=4, auto_create=True)
        (described,) = response.topics
        if described.error_code == wire.NONE and all(
            p.error_code == wire.NONE and p.leader_id >= 0 for p in described.partitions
        ):
            return len(described.partitions)
        if time.monotonic() > deadline:
            raise AssertionError(f"{topic} not auto-created with leaders: {described}")
        time.sleep(0.05)


@mms_only
@pytest.mark.timeout(30)
@pytest.mark.parametrize("how", ["console-script", "module"])
def test_help_describes_the_contract(how: str) -> None:
    launcher = [str(console_script())] if how == "console-script" else module_launcher()
    result = subprocess.run(
        [*launcher, "broker", "--help"], capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 0, result.stderr
    for option in ("--data-dir", "--host", "--port", "--broker-id", "--config", "--set"):
        assert option in result.stdout, f"{option} missing from `broker --help`"


@mms_only
@pytest.mark.timeout(60)
def test_console_script_prints_ready_without_unbuffered_and_stops_on_sigint(
    broker_factory: BrokerFactory,
) -> None:
    # No PYTHONUNBUFFERED: the ready line must be flushed by the broker itself, or a
    # supervisor reading its stdout through a pipe waits forever.
    broker = broker_factory(launcher=[str(console_script())], unbuffered=False)
    assert broker.ready_line is not None and "ready" in broker.ready_line
    wire.assert_broker_serves(broker.bootstrap)
    broker.interrupt()  # asserts exit code 0
    broker.start()
    wire.assert_broker_serves(broker.bootstrap)
    broker.stop()


@pytest.mark.timeout(60)
def test_repeated_set_options_all_apply(broker_factory: BrokerFactory) -> None:
    broker = broker_factory({"auto.create.topics.enable": "true", "num.partitions": 5})
    assert _auto_created_partitions(broker.bootstrap, "auto-five") == 5


@pytest.mark.timeout(60)
def test_config_file_and_set_override(broker_factory: BrokerFactory, tmp_path: Path) -> None:
    properties = tmp_path / "server.properties"
    properties.write_text(
        "# a Kafka server.properties\n"
        "auto.create.topics.enable=true\n"
        "num.partitions=4\n"
        "log.segment.bytes=1048576\n"
    )
    from_file = broker_factory(config_file=properties)
    assert _auto_created_partitions(from_file.bootstrap, "from-file") == 4
    from_file.stop()

    # --set wins over the file, as Kafka's --override does over server.properties.
    overridden = broker_factory({"num.partitions": 2}, config_file=properties)
    assert _auto_created_partitions(overridden.bootstrap, "overridden") == 2


@pytest.mark.timeout(60)
def test_broker_id_is_advertised(broker_factory: BrokerFactory) -> None:
    broker = broker_factory(broker_id=7)
    wire.assert_broker_serves(broker.bootstrap, broker_id=7)


@mms_only
@pytest.mark.timeout(60)
@pytest.mark.parametrize(("choice", "loop"), [(None, "uvloop"), ("asyncio", "asyncio")])
def test_event_loop_is_uvloop_unless_asyncio_is_asked_for(
    broker_factory: BrokerFactory, choice: str | None, loop: str
) -> None:
    """Both loops serve real clients: a 3 MB fetch (sendfile, waits for the socket) and a
    metadata round trip."""
    broker = broker_factory(extra_env={"MMS_EVENT_LOOP": choice} if choice else {})
    wire.assert_broker_serves(broker.bootstrap)
    assert f"(event loop: {loop})" in broker.stderr_text()
    assert _auto_created_partitions(broker.bootstrap, "loop-check") >= 1
    payload = bytes(range(256)) * 4000  # 1 MB: the batch stays under message.max.bytes
    batch = wire.build_record_batch([wire.Record(None, payload)], base_timestamp=int(time.time()))
    for _ in range(3):
        assert wire.produce(broker.bootstrap, "loop-check", 0, batch).error_code == wire.NONE
    with wire.WireConnection(broker.bootstrap) as conn:
        response = conn.request(wire.fetch_request("loop-check", 0, 0, max_bytes=8 << 20))
    fetched = wire.fetch_partition_response(response)
    assert fetched.error_code == wire.NONE
    assert [h.base_offset for h in wire.batch_headers(fetched.records)] == [0, 1, 2]
