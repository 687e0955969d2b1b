"""Differential tests: every scenario runs against Apache Kafka and against our broker.

`reference_kafka` is one Kafka for the whole session (tests use unique topic names);
`broker` is a fresh broker of ours per test (tests/conftest.py). `targets` gives both.
"""

from __future__ import annotations

import pytest
from helpers.broker_process import BrokerProcess
from helpers.reference_kafka import ReferenceKafka, reference_kafka

from .differential import Target, Targets

__all__ = ["reference_kafka"]


@pytest.fixture
def targets(reference_kafka: ReferenceKafka, broker: BrokerProcess) -> Targets:
    return Targets(
        kafka=Target("kafka", reference_kafka.bootstrap), ours=Target("ours", broker.bootstrap)
    )
