"""`mms topic|produce|consume|group|cluster` end to end against a real broker."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from metamorphostreams.client import Admin
from metamorphostreams.protocol.api_versions import SERVED

from .conftest import Mms, one_line_error, run_mms
from .runner import invoke_mms

JOIN_GROUP = 11


def test_topic_commands(mms: Mms) -> None:
    assert mms("topic", "create", "orders", "-p", "3", "-c", "retention.ms=3600000").stdout == (
        "created topic orders\n"
    )
    mms("topic", "create", "plain")
    one_line_error(mms("topic", "create", "orders", check=False), "already exists")
    mms("topic", "create", "orders", "--if-not-exists")
    listing = mms("topic", "list").stdout.splitlines()
    assert listing[0].split() == ["TOPIC", "PARTITIONS"]
    assert [line.split() for line in listing[1:]] == [["orders", "3"], ["plain", "2"]]
    assert json.loads(mms("topic", "list", "--json").stdout) == [
        {"name": "orders", "partitions": 3},
        {"name": "plain", "partitions": 2},
    ]
    described = json.loads(mms("topic", "describe", "orders", "--json").stdout)
    assert described["configs"] == {"retention.ms": "3600000"}
    assert [p["partition"] for p in described["partitions"]] == [0, 1, 2]
    assert all(p["leader"] == 0 and p["latest_offset"] == 0 for p in described["partitions"])
    table = mms("topic", "describe", "orders").stdout
    assert "Configs: retention.ms=3600000" in table and "PARTITION  LEADER" in table
    mms("topic", "add-partitions", "plain", "--total", "4")
    assert json.loads(mms("topic", "describe", "plain", "--json").stdout)["partitions"][3]
    assert mms("topic", "delete", "plain").stdout == "deleted topic plain\n"
    one_line_error(mms("topic", "delete", "plain", check=False), "unknown topic 'plain'")
    mms("topic", "delete", "plain", "--if-exists")
    one_line_error(mms("topic", "describe", "nope", check=False), "unknown topic 'nope'")


def test_alter_config(mms: Mms) -> None:
    mms("topic", "create", "cfg")
    result = mms("topic", "alter-config", "cfg", "--set", "retention.ms=1000", check=False)
    if 44 not in SERVED:
        one_line_error(result, "does not support IncrementalAlterConfigs")
    else:
        assert result.returncode == 0
        assert json.loads(mms("topic", "describe", "cfg", "--json").stdout)["configs"] == {
            "retention.ms": "1000"
        }
    one_line_error(mms("topic", "alter-config", "cfg", check=False), "nothing to change")
    one_line_error(
        mms("topic", "alter-config", "nope", "--set", "a=b", check=False), "unknown topic"
    )


def test_produce_and_consume(mms: Mms, tmp_path: Path) -> None:
    mms("topic", "create", "t", "-p", "2")
    lines = "".join(f"key{i % 3}:value {i}\n" for i in range(10))
    produced = mms("produce", "t", "-K", ":", "-H", "app=cli", "-H", "v=1", stdin=lines)
    assert "produced 10 records to t" in produced.stderr
    records = [
        json.loads(line)
        for line in mms("consume", "t", "--from-beginning", "-e", "--json").stdout.splitlines()
    ]
    assert len(records) == 10
    assert {r["value"] for r in records} == {f"value {i}" for i in range(10)}
    assert all(r["key"] == f"key{int(r['value'].split()[1]) % 3}" for r in records)
    assert all(r["headers"] == [["app", "cli"], ["v", "1"]] for r in records)
    by_key = {}
    for r in records:
        by_key.setdefault(r["key"], set()).add(r["partition"])
    assert all(len(parts) == 1 for parts in by_key.values())  # one key, one partition
    # A file, a fixed partition, a codec; JSON summary.
    source = tmp_path / "in.txt"
    source.write_text("a\nb\nc")
    summary = mms("produce", "t", "-f", str(source), "-p", "1", "-z", "zstd", "--json")
    assert json.loads(summary.stdout) == {"topic": "t", "records": 3, "partitions": {"1": 3}}
    plain = mms("consume", "t", "-p", "1", "--from-beginning", "-e").stdout.splitlines()
    assert plain[-3:] == ["a", "b", "c"]
    count = mms("consume", "t", "--from-beginning", "-c", "4").stdout.splitlines()
    assert len(count) == 4
    first = records[0]
    offset = mms(
        "consume",
        "t",
        "-p",
        str(first["partition"]),
        "--offset",
        str(first["offset"]),
        "-c",
        "1",
        "--format",
        "%t|%p|%o|%k|%v|%h|%K|%S",
    ).stdout
    assert offset == (
        f"t|{first['partition']}|{first['offset']}|{first['key']}|{first['value']}|"
        f"app=cli,v=1|{len(first['key'])}|{len(first['value'])}\n"
    )
    stamp = max(r["timestamp"] for r in records) + 1
    after = mms("consume", "t", "--timestamp", str(stamp), "-e", "-p", "1").stdout
    assert after.splitlines() == ["a", "b", "c"]
    tail = mms("consume", "t", "--offset", "end", "-e").stdout
    assert tail == ""
    assert mms("consume", "t", "--timeout", "0.3").stdout == ""  # from the end, nothing new


def test_produce_and_consume_errors(mms: Mms, cli_broker) -> None:  # type: ignore[no-untyped-def]
    mms("topic", "create", "t")
    one_line_error(mms("produce", "nope", stdin="x\n", check=False), "unknown topic 'nope'")
    one_line_error(mms("consume", "nope", "-e", check=False), "unknown topic 'nope'")
    one_line_error(
        mms("produce", "t", "-K", ":", stdin="no separator\n", check=False),
        "no key separator",
    )
    one_line_error(
        mms("consume", "t", "-X", "fetch.max.wait=1", "-e", check=False),
        "unknown consumer configuration 'fetch.max.wait'",
        "did you mean 'fetch.max.wait.ms'",
    )
    one_line_error(
        mms("produce", "t", "-X", "linger.ms=soon", stdin="x\n", check=False),
        "invalid value 'soon' for configuration 'linger.ms'",
    )
    one_line_error(mms("consume", "t", "-p", "9", "-e", check=False), "no partition 9")
    one_line_error(mms("consume", "t", "--offset", "abc", check=False), "--offset expects")
    one_line_error(
        mms("consume", "t", "--group", "g", "--offset", "1", check=False), "cannot be used"
    )
    one_line_error(
        mms("consume", "t", "--json", "--format", "%v", check=False), "cannot be used together"
    )
    one_line_error(
        mms("produce", "t", "--config", "/nonexistent.properties", stdin="", check=False),
        "cannot read config file",
    )


def test_config_file(mms: Mms, tmp_path: Path) -> None:
    mms("topic", "create", "t", "-p", "1")
    props = tmp_path / "client.properties"
    props.write_text("compression.type=gzip\nlinger.ms=1\n")
    mms("produce", "t", "--config", str(props), stdin="x\n")
    bad = tmp_path / "bad.properties"
    bad.write_text("not.a.real.key=1\n")
    one_line_error(
        mms("produce", "t", "--config", str(bad), stdin="x\n", check=False),
        "unknown producer configuration 'not.a.real.key'",
    )


def test_real_process_round_trip(mms_subprocess: Mms) -> None:
    """The module entry point as a process: stdin, stdout, exit status, errors on stderr."""
    mms_subprocess("topic", "create", "p", "-p", "1")
    mms_subprocess("produce", "p", stdin="one\ntwo\n")
    assert mms_subprocess("consume", "p", "--from-beginning", "-e").stdout == "one\ntwo\n"
    one_line_error(mms_subprocess("consume", "nope", check=False), "unknown topic 'nope'")


def test_broker_down_and_bad_arguments() -> None:
    one_line_error(run_mms("topic", "list", "-b", "127.0.0.1:1"), "cannot connect to broker")
    one_line_error(invoke_mms("consume", "t", "-b", "127.0.0.1:1"), "Connection refused")
    one_line_error(invoke_mms("group", "list", "-b", "127.0.0.1:1"), "Connection refused")
    one_line_error(invoke_mms("cluster", "describe", "-b", "nonsense"), "invalid bootstrap server")
    result = run_mms("topic", "create")
    assert result.returncode == 2
    one_line_error(result, "the following arguments are required")
    one_line_error(invoke_mms("topic", "frobnicate"), "invalid choice")
    one_line_error(invoke_mms("consume", "t", "--count", "x"), "invalid int value")
    one_line_error(invoke_mms("nothing"), "invalid choice")


def test_cluster_describe(mms: Mms, cli_broker) -> None:  # type: ignore[no-untyped-def]
    table = mms("cluster", "describe", "--api-versions").stdout
    assert "Controller: 0" in table and f"{cli_broker.port}" in table and "Produce" in table
    data = json.loads(mms("cluster", "describe", "--json", "--api-versions").stdout)
    assert data["controller_id"] == 0
    assert data["brokers"] == [
        {"id": 0, "host": "127.0.0.1", "port": cli_broker.port, "rack": None}
    ]
    assert data["api_versions"]["Fetch"] == [SERVED[1].advertised_min, SERVED[1].max_version]


@pytest.fixture
def group_mms(mms: Mms, cli_broker) -> Mms:  # type: ignore[no-untyped-def]
    external = os.environ.get("MMS_GROUP_TEST_BOOTSTRAP")
    if external:

        def run(*args: str, stdin: str | None = None, check: bool = True):  # type: ignore[no-untyped-def]
            return run_mms(*args, "-b", external, stdin=stdin, check=check)

        return run
    with Admin({"bootstrap.servers": cli_broker.bootstrap}) as admin:
        if not admin.supports(JOIN_GROUP):
            pytest.skip("the broker does not serve consumer groups yet (JoinGroup)")
    return mms


def test_group_commands(group_mms: Mms) -> None:
    mms = group_mms
    topic = f"gt-{uuid.uuid4().hex[:8]}"
    group = f"gg-{uuid.uuid4().hex[:8]}"
    mms("topic", "create", topic, "-p", "2")
    mms("produce", topic, "-p", "0", stdin="".join(f"{i}\n" for i in range(6)))
    got = mms("consume", topic, "--group", group, "--from-beginning", "-c", "4").stdout
    assert got.splitlines() == ["0", "1", "2", "3"]
    listing = mms("group", "list", "--json").stdout
    assert group in {g["group"] for g in json.loads(listing)}
    described = json.loads(mms("group", "describe", group, "--json").stdout)
    offsets = {(o["partition"]): o for o in described["offsets"]}
    assert offsets[0]["committed_offset"] == 4 and offsets[0]["lag"] == 2
    table = mms("group", "describe", group).stdout
    assert "CURRENT-OFFSET" in table and "LAG" in table
    # The group resumes where it committed.
    assert mms("consume", topic, "--group", group, "-c", "2").stdout.splitlines() == ["4", "5"]
    plan = mms("group", "reset-offsets", group, "--topic", topic, "--to-earliest").stdout
    assert "dry run" in plan
    mms("group", "reset-offsets", group, "--topic", topic, "--to-offset", "1", "--execute")
    assert mms("consume", topic, "--group", group, "-c", "1").stdout == "1\n"
    mms("group", "reset-offsets", group, "--topic", topic, "--shift-by", "-1", "--execute")
    assert (
        json.loads(mms("group", "describe", group, "--json").stdout)["offsets"][0][
            "committed_offset"
        ]
        == 1
    )
    assert mms("group", "delete", group).stdout == f"deleted group {group}\n"
    one_line_error(mms("group", "delete", group, check=False), "group")
