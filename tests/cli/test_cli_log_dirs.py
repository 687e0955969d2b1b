"""`mms log-dirs` and the replica columns of `mms topic describe` against a real broker."""

from __future__ import annotations

import json
from pathlib import Path

from metamorphostreams.pytest_plugin import BrokerThread

from .conftest import Mms, one_line_error


def _segment_bytes(data_dir: Path, topic: str, partition: int) -> int:
    return sum(p.stat().st_size for p in (data_dir / f"{topic}-{partition}").glob("*.log"))


def test_log_dirs_lists_every_partition_with_its_size(mms: Mms, cli_broker: BrokerThread) -> None:
    mms("topic", "create", "ld", "-p", "2")
    mms("topic", "create", "other", "-p", "1")
    mms("produce", "ld", "-p", "1", stdin="a\nb\nc\n")
    path = str(cli_broker.data_dir.absolute())

    data = json.loads(mms("log-dirs", "--json").stdout)
    [broker] = data["brokers"]
    assert broker["broker"] == 0
    [d] = broker["log_dirs"]
    assert d["path"] == path and d["error"] is None and d["is_cordoned"] is False
    assert d["total_bytes"] > 0 and 0 <= d["usable_bytes"] <= d["total_bytes"]
    assert [(p["topic"], p["partition"]) for p in d["partitions"]] == [
        ("ld", 0),
        ("ld", 1),
        ("other", 0),
    ]
    sizes = {(p["topic"], p["partition"]): p["size"] for p in d["partitions"]}
    assert sizes == {tp: _segment_bytes(cli_broker.data_dir, *tp) for tp in sizes}
    assert sizes[("ld", 1)] > 0 and sizes[("ld", 0)] == 0
    assert all(p["offset_lag"] == 0 and p["is_future"] is False for p in d["partitions"])

    only = json.loads(mms("log-dirs", "--json", "--topic", "other", "--broker", "0").stdout)
    [d] = only["brokers"][0]["log_dirs"]
    assert [(p["topic"], p["partition"]) for p in d["partitions"]] == [("other", 0)]

    table = mms("log-dirs", "--topic", "ld").stdout.splitlines()
    assert table[0].startswith(f"Broker: 0  LogDir: {path}  Total: ")
    assert table[1].split() == ["TOPIC", "PARTITION", "SIZE", "OFFSET_LAG", "FUTURE"]
    assert [line.split()[:2] for line in table[2:]] == [["ld", "0"], ["ld", "1"]]


def test_log_dirs_bad_input(mms: Mms) -> None:
    one_line_error(mms("log-dirs", "--broker", "0,7", check=False), "no broker 7", "brokers: 0")
    result = mms("log-dirs", "--broker", "x", check=False)
    assert result.returncode == 2
    one_line_error(result, "not a broker id: 'x'")


def test_topic_describe_shows_replicas_isr_and_offline(mms: Mms) -> None:
    mms("topic", "create", "rep", "-p", "2")
    [p0, p1] = json.loads(mms("topic", "describe", "rep", "--json").stdout)["partitions"]
    for p in (p0, p1):
        assert (p["leader"], p["replicas"], p["isr"], p["offline_replicas"]) == (0, [0], [0], [])
    table = mms("topic", "describe", "rep").stdout.splitlines()
    assert table[2].split() == [
        "PARTITION", "LEADER", "REPLICAS", "ISR", "OFFLINE", "EARLIEST", "LATEST"
    ]  # fmt: skip
    assert table[3].split() == ["0", "0", "0", "0", "-", "0", "0"]
