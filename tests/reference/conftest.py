"""Differential tests: every scenario runs against Apache Kafka and against our broker.

`reference_kafka` is one Kafka for the whole session (tests use unique topic names);
`broker` is a fresh broker of ours per test (tests/conftest.py). `targets` gives both.
"""

from __future__ import annotations

import pytest
from helpers.broker_process import BrokerProcess
from helpers.reference_kafka import BASE_PROPERTIES, ReferenceKafka, reference_kafka

from .differential import TXN_ABORT_CHECK_INTERVAL_MS, Target, Targets

__all__ = ["reference_kafka"]

# Kafka looks for transactions past their timeout every 10 s by default; the session's Kafka
# (started after collection, so with this setting) looks every second, for
# test_transactions_data.py::test_transaction_timeout. No other test lets a transaction time
# out, so nothing else sees the difference.
BASE_PROPERTIES.setdefault(
    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
    str(TXN_ABORT_CHECK_INTERVAL_MS),
)


@pytest.fixture
def targets(reference_kafka: ReferenceKafka, broker: BrokerProcess) -> Targets:
    return Targets(
        kafka=Target("kafka", reference_kafka.bootstrap), ours=Target("ours", broker.bootstrap)
    )
