"""kafka-python takes a broker's release from its ApiVersions table: ours must read as Kafka 4.

Clients pick protocols by that release (issue 16: before Fetch 13-18 and ListOffsets 8-11 we
read as Kafka 3.8). kafka-python's own inference, not a copy of it, is what is asked here.
"""

from __future__ import annotations

from helpers.broker_process import BrokerProcess
from kafka import KafkaAdminClient
from kafka.protocol.broker_version_data import infer_broker_version_from_api_versions

from metamorphostreams.protocol.api_versions import SERVED

KAFKA_4 = (4, 0)


def test_served_table_reads_as_kafka_4() -> None:
    table = {key: (r.advertised_min, r.max_version) for key, r in SERVED.items()}
    assert infer_broker_version_from_api_versions(table) >= KAFKA_4


def test_kafka_python_client_takes_us_for_kafka_4(broker: BrokerProcess) -> None:
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="mms-version-check")
    try:
        assert admin._client.check_version() >= KAFKA_4
    finally:
        admin.close()
