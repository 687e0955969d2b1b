"""KIP-848 regex subscriptions (issue 16, item 9): resolved by the group after the
heartbeat that brought them, as Kafka 4 does, so the literal topics come first and the
regex's topics in a later epoch; refreshed when topics are created (at most every 10 s) and
persisted as ConsumerGroupRegularExpression records (key version 16)."""

from __future__ import annotations

import uuid

from metamorphostreams.coordinator.records import (
    CONSUMER_GROUP_REGULAR_EXPRESSION_KEY,
    ConsumerGroupRegularExpressionValue,
    RecordKey,
    decode_key,
    decode_value,
)
from metamorphostreams.protocol.errors import ErrorCode

from .helpers import LOGS_ID, ORDERS_ID, Harness, durable_state
from .test_consumer_group import Client

ORDINALS_ID = uuid.UUID(int=0xC3)


def regex_records(h: Harness, since: int = 0) -> list[tuple[str, object]]:
    out = []
    for record in h.log[since:]:
        key = decode_key(record.key)
        if key is not None and key.version == CONSUMER_GROUP_REGULAR_EXPRESSION_KEY:
            out.append((key.regex, decode_value(key.version, record.value)))
    return out


def test_literal_topics_first_then_the_regex_topics() -> None:
    h = Harness()
    c = Client(h, "m", topics=["logs"], regex="or.*")
    first = c.heartbeat()
    assert (first.error_code, first.member_epoch) == (0, 2)
    assert c.owned == {LOGS_ID: {0, 1, 2}}  # the regex is not resolved yet
    # Resolved once the heartbeat was answered: persisted, and the group epoch bumped.
    (resolved,) = regex_records(h)
    assert resolved[0] == "or.*"
    value = resolved[1]
    assert isinstance(value, ConsumerGroupRegularExpressionValue)
    assert (value.topics, value.timestamp) == (("orders",), h.now)
    assert h.consumer().group_epoch == 3
    second = c.heartbeat()
    assert second.member_epoch == 3
    assert c.owned == {LOGS_ID: {0, 1, 2}, ORDERS_ID: set(range(6))}
    assert durable_state(h.restarted()) == durable_state(h.coord)


def test_new_topics_are_resolved_at_the_next_refresh() -> None:
    h = Harness()
    c = Client(h, "m", topics=None, regex="or.*")
    c.heartbeat()
    c.heartbeat()
    assert c.owned == {ORDERS_ID: set(range(6))}
    h.topics["ordinals"] = (ORDINALS_ID, 2)
    h.tick(1_000)
    c.heartbeat()  # within 10 s of the last resolution: no refresh yet
    assert c.owned == {ORDERS_ID: set(range(6))}
    h.tick(10_000)
    before = len(h.log)
    c.heartbeat()  # asks for the refresh; its topics come with the next epoch
    assert [r for r, _ in regex_records(h, before)] == ["or.*"]
    c.heartbeat()
    assert c.owned == {ORDERS_ID: set(range(6)), ORDINALS_ID: {0, 1}}
    # A deleted topic leaves the subscription on the next heartbeat.
    del h.topics["ordinals"]
    c.heartbeat()
    c.heartbeat()
    assert c.owned == {ORDERS_ID: set(range(6))}


def test_a_second_member_with_a_resolved_regex_and_the_last_one_leaving() -> None:
    h = Harness()
    a = Client(h, "a", topics=None, regex="or.*")
    a.heartbeat()
    a.heartbeat()
    b = Client(h, "b", topics=None, regex="or.*")
    b.heartbeat()  # already resolved: the group epoch bumps at once
    assert h.consumer().group_epoch == 4
    for _ in range(4):
        a.heartbeat()
        b.heartbeat()
    assert sorted([a.count(), b.count()]) == [3, 3]
    a.leave()
    assert regex_records(h)[-1][0] == "or.*" and regex_records(h)[-1][1] is not None
    before = len(h.log)
    b.leave()
    assert regex_records(h, before) == [("or.*", None)]  # its last member left
    assert h.consumer().resolved_regexes == {}


def test_invalid_regexes() -> None:
    h = Harness()
    bad = Client(h, "n", topics=None, regex="(").heartbeat()
    assert bad.error_code == ErrorCode.INVALID_REGULAR_EXPRESSION
    lookahead = Client(h, "n", topics=None, regex="(?=or).*").heartbeat()  # not RE2/J
    assert lookahead.error_code == ErrorCode.INVALID_REGULAR_EXPRESSION


def test_record_format() -> None:
    key = RecordKey(CONSUMER_GROUP_REGULAR_EXPRESSION_KEY, "g", regex="a.*")
    assert key.encode() == b"\x00\x10\x00\x01g\x00\x03a.*"
    assert decode_key(key.encode()) == key
    value = ConsumerGroupRegularExpressionValue(("ab", "ac"), 7, 1234)
    assert value.encode() == (
        b"\x00\x00"
        + b"\x03"
        + b"\x03ab"
        + b"\x03ac"
        + (7).to_bytes(8, "big")
        + (1234).to_bytes(8, "big")
        + b"\x00"
    )
    assert ConsumerGroupRegularExpressionValue.decode(value.encode()) == value
