"""ElectLeaders on a standalone broker: it leads the only replica of every partition, so no
election is ever needed; Kafka's answers for unknown partitions and bad election types."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from metamorphostreams.protocol._generated.elect_leaders import ElectLeadersRequest
from metamorphostreams.protocol.errors import ErrorCode
from metamorphostreams.server.broker import Broker

from .ourwire import WireClient
from .test_apis import create

NOT_NEEDED = (ErrorCode.ELECTION_NOT_NEEDED, "Leader election not needed for topic partition.")
UNKNOWN = (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "The partition does not exist.")


def _request(partitions: dict[str, list[int]] | None, election_type: int = 0) -> Any:
    topics = (
        None
        if partitions is None
        else [
            ElectLeadersRequest.TopicPartitions(topic=t, partitions=p)
            for t, p in partitions.items()
        ]
    )
    return ElectLeadersRequest(
        election_type=election_type, topic_partitions=topics, timeout_ms=1000
    )


def _results(response: Any) -> dict[tuple[str, int], tuple[int, str | None]]:
    return {
        (t.topic, p.partition_id): (p.error_code, p.error_message)
        for t in response.replica_election_results
        for p in t.partition_result
    }


def run(tmp_path: Path, scenario: Any) -> None:
    async def main() -> None:
        async with Broker(tmp_path / "data", port=0) as broker:
            client = await WireClient.connect(broker.host, broker.port)
            try:
                await create(client, "t", 2)
                await scenario(client)
            finally:
                await client.close()

    asyncio.run(main())


@pytest.mark.parametrize("version", [0, 1, 2])
@pytest.mark.parametrize("election_type", [0, 1])
def test_named_partitions(tmp_path: Path, version: int, election_type: int) -> None:
    async def scenario(c: WireClient) -> None:
        asked = {"t": [1, 0, 7, 1], "missing": [0]}
        response = await c.request(_request(asked, election_type), version)
        assert response.error_code == ErrorCode.NONE
        assert [t.topic for t in response.replica_election_results] == ["t", "missing"]
        assert _results(response) == {
            ("t", 1): NOT_NEEDED,
            ("t", 0): NOT_NEEDED,
            ("t", 7): UNKNOWN,
            ("missing", 0): UNKNOWN,
        }

    run(tmp_path, scenario)


def test_every_partition_leaves_out_those_needing_no_election(tmp_path: Path) -> None:
    async def scenario(c: WireClient) -> None:
        response = await c.request(_request(None), 2)
        assert response.error_code == ErrorCode.NONE
        assert response.replica_election_results == []

    run(tmp_path, scenario)


def test_unknown_election_type(tmp_path: Path) -> None:
    async def scenario(c: WireClient) -> None:
        response = await c.request(_request({"t": [0]}, election_type=7), 2)
        assert response.error_code == ErrorCode.UNKNOWN_SERVER_ERROR
        assert _results(response) == {("t", 0): (ErrorCode.UNKNOWN_SERVER_ERROR, None)}
        everything = await c.request(_request(None, election_type=7), 1)
        assert everything.error_code == ErrorCode.UNKNOWN_SERVER_ERROR
        assert everything.replica_election_results == []

    run(tmp_path, scenario)
