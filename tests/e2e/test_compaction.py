"""Log compaction end to end: confluent-kafka writes overwritten keys to a compacted topic
whose segments roll quickly; the broker's cleaner threads compact them; a consumer from the
beginning reads the latest value of each key, at increasing offsets, the old ones gone."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Producer
from helpers.broker_process import BrokerProcess
from helpers.confluent import client_config, consume_all, create_topic, wait_until

KEYS = 200
WAVES = 3


@pytest.mark.timeout(120)
def test_compacted_topic_keeps_the_latest_value_per_key(broker_factory) -> None:  # type: ignore[no-untyped-def]
    broker: BrokerProcess = broker_factory(
        {"log.cleaner.backoff.ms": 100, "log.segment.delete.delay.ms": 0}
    )
    topic = f"compacted-{uuid.uuid4().hex[:8]}"
    create_topic(
        broker.bootstrap,
        topic,
        1,
        {
            "cleanup.policy": "compact",
            "segment.bytes": "1048576",
            "segment.ms": "300",
            "min.cleanable.dirty.ratio": "0.01",
        },
    )
    producer = Producer(client_config(broker.bootstrap, **{"linger.ms": 5}))
    model: dict[bytes, bytes] = {}
    for wave in range(WAVES):
        for k in range(KEYS):
            key, value = b"key-%03d" % k, b"wave-%d-of-%03d" % (wave, k)
            producer.produce(topic, key=key, value=value, partition=0)
            model[key] = value
        assert producer.flush(30) == 0
        time.sleep(0.5)  # the next wave starts a new segment (segment.ms)
    producer.produce(topic, key=b"last", value=b"rolls the last wave out", partition=0)
    assert producer.flush(30) == 0
    model[b"last"] = b"rolls the last wave out"
    produced = KEYS * WAVES + 1

    def compacted() -> bool:
        messages = consume_all(broker.bootstrap, topic, [0])[0]
        return len(messages) == len(model)

    wait_until(compacted, "the cleaner to compact the topic", limit_s=60)
    messages = consume_all(broker.bootstrap, topic, [0])[0]
    offsets = [m.offset() for m in messages]
    assert offsets == sorted(set(offsets))
    assert {m.key(): m.value() for m in messages} == model
    assert len({m.key() for m in messages}) == len(messages)
    assert offsets[0] == KEYS * (WAVES - 1)  # the earlier waves' offsets are gone
    assert offsets[-1] == produced - 1
