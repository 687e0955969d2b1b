"""Every served API against an in-process broker on a real socket, through our codec."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from metamorphostreams.protocol._generated.api_versions import ApiVersionsRequest
from metamorphostreams.protocol._generated.create_partitions import CreatePartitionsRequest
from metamorphostreams.protocol._generated.create_topics import CreateTopicsRequest
from metamorphostreams.protocol._generated.delete_records import DeleteRecordsRequest
from metamorphostreams.protocol._generated.delete_topics import DeleteTopicsRequest
from metamorphostreams.protocol._generated.describe_cluster import DescribeClusterRequest
from metamorphostreams.protocol._generated.describe_configs import DescribeConfigsRequest
from metamorphostreams.protocol._generated.fetch import FetchRequest
from metamorphostreams.protocol._generated.init_producer_id import InitProducerIdRequest
from metamorphostreams.protocol._generated.list_offsets import ListOffsetsRequest
from metamorphostreams.protocol._generated.metadata import MetadataRequest
from metamorphostreams.protocol._generated.offset_for_leader_epoch import (
    OffsetForLeaderEpochRequest,
)
from metamorphostreams.protocol._generated.produce import ProduceRequest
from metamorphostreams.protocol.records import build_batch, iter_records
from metamorphostreams.server.broker import Broker

from .ourwire import WireClient

Scenario = Callable[[Broker, WireClient], Awaitable[None]]


def run(tmp_path: Path, scenario: Scenario, props: dict[str, str] | None = None) -> None:
    async def main() -> None:
        async with Broker(tmp_path / "data", port=0, props=props or {}) as broker:
            client = await WireClient.connect(broker.host, broker.port)
            try:
                await scenario(broker, client)
            finally:
                await client.close()

    asyncio.run(main())


async def create(client: WireClient, name: str, partitions: int = 1, **configs: str) -> Any:
    req = CreateTopicsRequest(
        topics=[
            CreateTopicsRequest.CreatableTopic(
                name=name,
                num_partitions=partitions,
                replication_factor=1,
                configs=[
                    CreateTopicsRequest.CreatableTopicConfig(name=k.replace("_", "."), value=v)
                    for k, v in configs.items()
                ],
            )
        ],
        timeout_ms=5000,
    )
    return (await client.request(req, 7)).topics[0]


async def produce(
    client: WireClient, topic: str, partition: int, records: bytes, acks: int = -1, version: int = 9
) -> Any:
    req = ProduceRequest(
        acks=acks,
        timeout_ms=5000,
        topic_data=[
            ProduceRequest.TopicProduceData(
                name=topic,
                partition_data=[
                    ProduceRequest.PartitionProduceData(index=partition, records=records)
                ],
            )
        ],
    )
    resp = await client.request(req, version)
    return resp.responses[0].partition_responses[0]


def fetch_request(
    topic: str, offsets: dict[int, int], *, max_wait_ms: int = 0, min_bytes: int = 0,
    max_bytes: int = 1 << 20, partition_max_bytes: int | None = None,
) -> FetchRequest:  # fmt: skip
    """A consumer's Fetch of ``topic`` from ``offsets`` (partition -> fetch offset)."""
    return FetchRequest(
        replica_id=-1,
        max_wait_ms=max_wait_ms,
        min_bytes=min_bytes,
        max_bytes=max_bytes,
        session_epoch=-1,
        topics=[
            FetchRequest.FetchTopic(
                topic=topic,
                partitions=[
                    FetchRequest.FetchPartition(
                        partition=partition,
                        fetch_offset=offset,
                        partition_max_bytes=partition_max_bytes or max_bytes,
                    )
                    for partition, offset in offsets.items()
                ],
            )
        ],
    )


async def fetch(
    client: WireClient, topic: str, partition: int, offset: int, *, max_wait_ms: int = 0,
    min_bytes: int = 0, version: int = 12, max_bytes: int = 1 << 20,
) -> Any:  # fmt: skip
    req = fetch_request(
        topic, {partition: offset}, max_wait_ms=max_wait_ms, min_bytes=min_bytes,
        max_bytes=max_bytes,
    )  # fmt: skip
    resp = await client.request(req, version, timeout=30)
    return resp.responses[0].partitions[0]


async def list_offset(client: WireClient, topic: str, partition: int, ts: int) -> Any:
    req = ListOffsetsRequest(
        replica_id=-1,
        topics=[
            ListOffsetsRequest.ListOffsetsTopic(
                name=topic,
                partitions=[
                    ListOffsetsRequest.ListOffsetsPartition(partition_index=partition, timestamp=ts)
                ],
            )
        ],
    )
    return (await client.request(req, 7)).topics[0].partitions[0]


def batch(values: list[bytes], ts0: int = 1_700_000_000_000, **kw: Any) -> bytes:
    return build_batch([(b"k%d" % i, v, [], ts0 + i) for i, v in enumerate(values)], **kw)


def test_api_versions_ranges_and_old_librdkafka_probes(tmp_path: Path) -> None:
    async def scenario(broker: Broker, c: WireClient) -> None:
        for version in (0, 3, 4):
            req = ApiVersionsRequest(client_software_name="t", client_software_version="1")
            resp = await c.request(req, version)
            assert resp.error_code == 0
            ranges = {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}
            # versions that librdkafka < 2.11.1 probes exactly
            for key, version_needed in (
                (0, 0),
                (0, 3),
                (0, 7),
                (1, 4),
                (1, 10),
                (2, 1),
                (18, 0),
                (22, 0),
            ):
                lo, hi = ranges[key]
                assert lo <= version_needed <= hi, (key, version_needed)
            # the transaction APIs, up to transaction.version 2 (EndTxn 5)
            for key, top in ((22, 5), (24, 5), (25, 4), (26, 5), (28, 5)):
                assert ranges[key] == (0, top), (key, ranges[key])

    run(tmp_path, scenario)


def test_api_versions_v3_writes_no_default_tagged_fields(tmp_path: Path) -> None:
    async def scenario(broker: Broker, c: WireClient) -> None:
        req = ApiVersionsRequest(client_software_name="t", client_software_version="1")
        await c.send_raw(c.frame(req, 3, 77))
        data = await c.read_frame()
        assert data[-1] == 0  # empty tagged-field section: old librdkafka can parse it

    run(tmp_path, scenario)


def test_api_versions_unknown_version_gets_unsupported_with_range(tmp_path: Path) -> None:
    async def scenario(broker: Broker, c: WireClient) -> None:
        req = ApiVersionsRequest(client_software_name="t", client_software_version="1")
        frame = bytearray(c.frame(req, 4, 5))
        frame[6:8] = (99).to_bytes(2, "big")  # api version 99
        await c.send_raw(bytes(frame))
        data = await c.read_frame()
        # response header v0 then an ApiVersions v0 body
        assert int.from_bytes(data[0:4], "big") == 5
        assert int.from_bytes(data[4:6], "big", signed=True) == 35
        assert int.from_bytes(data[6:10], "big") == 1
        assert int.from_bytes(data[10:12], "big") == 18
        assert int.from_bytes(data[14:16], "big") == 4

    run(tmp_path, scenario)


def test_unserved_api_closes_connection_and_others_are_served(tmp_path: Path) -> None:
    async def scenario(broker: Broker, c: WireClient) -> None:
        frame = bytearray(c.frame(ApiVersionsRequest(), 0, 9))
        frame[4:6] = (24).to_bytes(2, "big")  # AddPartitionsToTxn, not served yet
        await c.send_raw(bytes(frame))
        assert await c.reader.read() == b""
        other = await WireClient.connect(broker.host, broker.port)
        assert (await other.request(ApiVersionsRequest(), 0)).error_code == 0
        await other.close()

    run(tmp_path, scenario)


def test_metadata_auto_creates_and_respects_flags(tmp_path: Path) -> None:
    async def scenario(broker: Broker, c: WireClient) -> None:
        req = MetadataRequest(
            topics=[MetadataRequest.MetadataRequestTopic(name="auto")],
            allow_auto_topic_creation=True,
        )
        resp = await c.request(req, 12)
        t = resp.topics[0]
        assert (t.error_code, t.name, len(t.partitions)) == (0, "auto", 3)
        assert t.partitions[0].leader_id == broker.broker_id
        assert resp.cluster_id and resp.controller_id == broker.broker_id
        req.topics = [MetadataRequest.MetadataRequestTopic(name="nope")]
        req.allow_auto_topic_creation = False
        assert (await c.request(req, 12)).topics[0].error_code == 3
        req.topics = [MetadataRequest.MetadataRequestTopic(name="bad name!")]
        req.allow_auto_topic_creation = True
        assert (await c.request(req, 12)).topics[0].error_code == 17
        everything = await c.request(MetadataRequest(topics=None), 12)
        assert [t.name for t in everything.topics] == ["auto"]
        v0 = await c.request(MetadataRequest(topics=[]), 0)
        assert [t.name for t in v0.topics] == ["auto"]

    run(tmp_path, scenario, {"num.partitions": "3"})


def test_auto_create_disabled(tmp_path: Path) -> None:
    async def scenario(broker: Broker, c: WireClient) -> None:
        req = MetadataRequest(
            topics=[MetadataRequest.MetadataRequestTopic(name="t")], allow_auto_topic_creation=True
        )
        assert (await c.request(req, 12)).topics[0].error_code == 3
        assert (await produce(c, "t", 0, batch([b"x"]))).error_code == 3

    run(tmp_path, scenario, {"auto.create.topics.enable": "false"})


def test_produce_fetch_list_offsets(tmp_path: Path) -> None:
    async def scenario(broker: Broker, c: WireClient) -> None:
        assert (await create(c, "t", 2)).error_code == 0
        r1 = await produce(c, "t", 1, batch([b"a", b"b", b"c"]))
        r2 = await produce(c, "t", 1, batch([b"d", b"e"], ts0=1_700_000_001_000))
        assert (r1.error_code, r1.base_offset, r2.base_offset) == (0, 0, 3)
        for version in (4, 11, 12):
            part = await fetch(c, "t", 1, 0, version=version)
            assert part.error_code == 0 and part.high_watermark == 5
            got = [(r.offset, r.value) for r in iter_records(bytes(part.records))]
            assert got == list(enumerate([b"a", b"b", b"c", b"d", b"e"]))
        mid = await fetch(c, "t", 1, 3)
        assert [r.offset for r in iter_records(bytes(mid.records))] == [3, 4]
        assert (await fetch(c, "t", 1, 6)).error_code == 1  # OFFSET_OUT_OF_RANGE
        assert (await fetch(c, "t", 0, 0)).records is not None
        assert (await list_offset(c, "t", 1, -2)).offset == 0
        assert (await list_offset(c, "t", 1, -1)).offset == 5
        by_time = await list_offset(c, "t", 1, 1_700_000_000_001)
        assert (by_time.offset, by_time.timestamp) == (1, 1_700_000_000_001)
        assert (await list_offset(c, "t", 1, 1_700_000_000_500)).offset == 3
        assert (await list_offset(c, "t", 1, 1_800_000_000_000)).offset == -1
        max_ts = await list_offset(c, "t", 1, -3)
        assert (max_ts.offset, max_ts.timestamp) == (4, 1_700_000_001_001)
        assert (await list_offset(c, "nope", 0, -1)).error_code == 3

    run(tmp_path, scenario)


def test_produce_errors_leave_the_log_untouched(tmp_path: Path) -> None:
    async def scenario(broker: Broker, c: WireClient) -> None:
        await create(c, "t", 1, max_message_bytes="2000")
        good = batch([b"ok"])
        assert (await produce(c, "t", 0, good)).error_code == 0
        corrupt = bytearray(batch([b"x" * 10]))
        corrupt[-1] ^= 0xFF
        assert (await produce(c, "t", 0, bytes(corrupt))).error_code == 2  # CORRUPT_MESSAGE
        big = batch([b"y" * 5000])
        assert (await produce(c, "t", 0, big)).error_code == 10  # MESSAGE_TOO_LARGE
        assert (await produce(c, "t", 0, good, acks=2)).error_code == 21  # INVALID_REQUIRED_ACKS
        assert (await produce(c, "t", 0, good + good[:30])).error_code == 2
        assert (await produce(c, "t", 0, good + good)).error_code == 87  # one batch per partition
        assert (await list_offset(c, "t", 0, -1)).offset == 1

    run(tmp_path, scenario)


def test_acks_zero_has_no_response_and_appends(tmp_path: Path) -> None:
    async def scenario(broker: Broker, c: WireClient) -> None:
        await create(c, "t")
        req = ProduceRequest(
            acks=0,
            timeout_ms=1000,
            topic_data=[
                ProduceRequest.TopicProduceData(
                    name="t",
                    partition_data=[
                        ProduceRequest.PartitionProduceData(index=0, records=batch([b"z"]))
                    ],
                )
            ],
        )
        await c.send_raw(c.frame(req, 9, 1234))
        # the next response on the connection is for the next request, not the produce
        assert (await list_offset(c, "t", 0, -1)).offset == 1

    run(tmp_path, scenario)


def test_idempotent_producer_sequences(tmp_path: Path) -> None:
    async def scenario(broker: Broker, c: WireClient) -> None:
        await create(c, "t")
        ids = await c.request(
            InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=-1), 4
        )
        assert ids.error_code == 0 and ids.producer_epoch == 0
        pid = ids.producer_id
        again = await c.request(InitProducerIdRequest(transaction_timeout_ms=-1), 0)
        assert again.producer_id != pid
        b0 = batch([b"a", b"b"], producer_id=pid, producer_epoch=0, base_sequence=0)
        b1 = batch([b"c"], producer_id=pid, producer_epoch=0, base_sequence=2)
        assert (await produce(c, "t", 0, b0)).base_offset == 0
        dup = await produce(c, "t", 0, b0)
        assert (dup.error_code, dup.base_offset) == (0, 0)
        gap = batch([b"x"], producer_id=pid, producer_epoch=0, base_sequence=7)
        assert (await produce(c, "t", 0, gap)).error_code == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER
        assert (await produce(c, "t", 0, b1)).base_offset == 2
        assert (await list_offset(c, "t", 0, -1)).offset == 3
        txn = await c.request(
            InitProducerIdRequest(transactional_id="tx", transaction_timeout_ms=1000), 4
        )
        assert (txn.error_code, txn.producer_epoch) == (0, 0)
        assert txn.producer_id not in (pid, again.producer_id)

    run(tmp_path, scenario)


def test_fetch_long_poll_wakes_on_produce(tmp_path: Path) -> None:
    async def scenario(broker: Broker, c: WireClient) -> None:
        await create(c, "t")
        other = await WireClient.connect(broker.host, broker.port)
        waiting = asyncio.create_task(fetch(other, "t", 0, 0, max_wait_ms=20_000, min_bytes=1))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await produce(c, "t", 0, batch([b"wake"]))
        part = await asyncio.wait_for(waiting, 10)
        assert [r.value for r in iter_records(bytes(part.records))] == [b"wake"]
        empty = await fetch(other, "t", 0, 1, max_wait_ms=100, min_bytes=1)
        assert empty.error_code == 0 and len(bytes(empty.records or b"")) == 0
        await other.close()

    run(tmp_path, scenario)


def test_topic_admin_errors(tmp_path: Path) -> None:
    async def scenario(broker: Broker, c: WireClient) -> None:
        assert (await create(c, "t", 3)).error_code == 0
        assert (await create(c, "t", 3)).error_code == 36  # TOPIC_ALREADY_EXISTS
        assert (await create(c, "bad/name")).error_code == 17  # INVALID_TOPIC_EXCEPTION
        assert (await create(c, "x" * 250)).error_code == 17
        assert (await create(c, "zero", 0)).error_code == 37  # INVALID_PARTITIONS
        assert (await create(c, "cfg", 1, no_such_config="1")).error_code == 40  # INVALID_CONFIG
        assert (await create(c, "cfg", 1, retention_ms="abc")).error_code == 40
        assert (await create(c, "t.x")).error_code == 0
        assert (await create(c, "t_x")).error_code == 17  # collides with t.x
        rf = CreateTopicsRequest(
            topics=[
                CreateTopicsRequest.CreatableTopic(
                    name="rf", num_partitions=1, replication_factor=3
                )
            ]
        )
        assert (await c.request(rf, 7)).topics[0].error_code == 38  # INVALID_REPLICATION_FACTOR

        def grow(count: int) -> CreatePartitionsRequest:
            return CreatePartitionsRequest(
                topics=[
                    CreatePartitionsRequest.CreatePartitionsTopic(
                        name="t", count=count, assignments=None
                    )
                ],
                timeout_ms=5000,
            )

        assert (await c.request(grow(2), 3)).results[0].error_code == 37
        assert (await c.request(grow(3), 3)).results[0].error_code == 37
        assert (await c.request(grow(5), 3)).results[0].error_code == 0
        meta = await c.request(
            MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name="t")]), 12
        )
        assert len(meta.topics[0].partitions) == 5
        deleted = await c.request(
            DeleteTopicsRequest(topic_names=["t", "missing"], timeout_ms=5000), 5
        )
        assert [r.error_code for r in deleted.responses] == [0, 3]
        assert not (tmp_path / "data" / "t-0").exists()
        assert (await create(c, "t", 1)).error_code == 0

    run(tmp_path, scenario)


def test_describe_configs_and_cluster(tmp_path: Path) -> None:
    async def scenario(broker: Broker, c: WireClient) -> None:
        await create(c, "t", 1, retention_ms="1000")
        req = DescribeConfigsRequest(
            resources=[
                DescribeConfigsRequest.DescribeConfigsResource(
                    resource_type=2, resource_name="t", configuration_keys=None
                ),
                DescribeConfigsRequest.DescribeConfigsResource(
                    resource_type=2, resource_name="nope", configuration_keys=None
                ),
                DescribeConfigsRequest.DescribeConfigsResource(
                    resource_type=4, resource_name="0", configuration_keys=["num.partitions"]
                ),
            ],
            include_synonyms=True,
        )
        resp = await c.request(req, 4)
        topic, missing, brk = resp.results
        configs = {e.name: e for e in topic.configs}
        assert (
            configs["retention.ms"].value == "1000" and configs["retention.ms"].config_source == 1
        )
        assert (
            configs["segment.bytes"].value == "2000000"
            and configs["segment.bytes"].config_source == 4
        )
        assert (
            configs["cleanup.policy"].value == "delete"
            and configs["cleanup.policy"].config_source == 5
        )
        assert missing.error_code == 3
        assert [(e.name, e.value) for e in brk.configs] == [("num.partitions", "1")]
        cluster = await c.request(DescribeClusterRequest(), 1)
        assert cluster.error_code == 0 and cluster.brokers[0].port == broker.port

    run(tmp_path, scenario, {"log.segment.bytes": "2000000"})


def test_delete_records_and_leader_epochs(tmp_path: Path) -> None:
    async def scenario(broker: Broker, c: WireClient) -> None:
        await create(c, "t")
        for i in range(4):
            await produce(c, "t", 0, batch([b"v%d" % i]))
        req = DeleteRecordsRequest(
            topics=[
                DeleteRecordsRequest.DeleteRecordsTopic(
                    name="t",
                    partitions=[
                        DeleteRecordsRequest.DeleteRecordsPartition(partition_index=0, offset=2)
                    ],
                )
            ],
            timeout_ms=5000,
        )
        res = (await c.request(req, 2)).topics[0].partitions[0]
        assert (res.error_code, res.low_watermark) == (0, 2)
        assert (await list_offset(c, "t", 0, -2)).offset == 2
        assert (await fetch(c, "t", 0, 1)).error_code == 1
        req.topics[0].partitions[0].offset = 10
        assert (await c.request(req, 2)).topics[0].partitions[0].error_code == 1
        epochs = OffsetForLeaderEpochRequest(
            replica_id=-1,
            topics=[
                OffsetForLeaderEpochRequest.OffsetForLeaderTopic(
                    topic="t",
                    partitions=[
                        OffsetForLeaderEpochRequest.OffsetForLeaderPartition(
                            partition=0, current_leader_epoch=-1, leader_epoch=0
                        )
                    ],
                )
            ],
        )
        end = (await c.request(epochs, 4)).topics[0].partitions[0]
        assert (end.error_code, end.leader_epoch, end.end_offset) == (0, 0, 4)
        epochs.topics[0].partitions[0].current_leader_epoch = 5
        assert (await c.request(epochs, 4)).topics[0].partitions[0].error_code == 75

    run(tmp_path, scenario)


def test_restart_keeps_data_and_offsets_continue(tmp_path: Path) -> None:
    async def first(broker: Broker, c: WireClient) -> None:
        await create(c, "t")
        await produce(c, "t", 0, batch([b"a", b"b"]))

    async def second(broker: Broker, c: WireClient) -> None:
        assert (await produce(c, "t", 0, batch([b"c"]))).base_offset == 2
        part = await fetch(c, "t", 0, 0)
        assert [r.value for r in iter_records(bytes(part.records))] == [b"a", b"b", b"c"]

    run(tmp_path, first)
    assert (tmp_path / "data" / "t-0" / ("0" * 20 + ".log")).exists()
    run(tmp_path, second)


def test_log_append_time_topic(tmp_path: Path) -> None:
    async def scenario(broker: Broker, c: WireClient) -> None:
        await create(c, "t", 1, message_timestamp_type="LogAppendTime")
        before = time.time_ns() // 1_000_000
        resp = await produce(c, "t", 0, batch([b"a"], ts0=5))
        assert resp.log_append_time_ms >= before
        part = await fetch(c, "t", 0, 0)
        assert [r.timestamp for r in iter_records(bytes(part.records))] == [resp.log_append_time_ms]

    run(tmp_path, scenario)


@pytest.mark.parametrize("version", [3, 7, 9, 11])
def test_produce_versions(tmp_path: Path, version: int) -> None:
    async def scenario(broker: Broker, c: WireClient) -> None:
        await create(c, "t")
        assert (await produce(c, "t", 0, batch([b"v"]), version=version)).error_code == 0

    run(tmp_path, scenario)
