"""The LogValidator checks that read records: compacted keys, topic compression.type."""

from __future__ import annotations

import pytest

from metamorphostreams.protocol.errors import ErrorCode
from metamorphostreams.protocol.record_batch import (
    BATCH_HEADER_SIZE,
    CompressionType,
    iter_batch_headers,
)
from metamorphostreams.protocol.records import build_batch, decode_batch
from metamorphostreams.storage._record_checks import (
    Recompressed,
    check_records,
    recompress,
    target_codec,
)
from metamorphostreams.storage.log_config import LogConfig

ROWS = [
    (b"k%d" % i, b"value-%d " % i * 20, [("h", b"x")], 1_700_000_000_000 + i) for i in range(50)
]


def _config(**props: str) -> LogConfig:
    return LogConfig.from_props({k.replace("_", "."): v for k, v in props.items()})


def _batch(codec: CompressionType, **kw: object) -> bytearray:
    return bytearray(build_batch(ROWS, compression=codec, **kw))  # type: ignore[arg-type]


def _run(records: bytearray, config: LogConfig):  # type: ignore[no-untyped-def]
    return recompress(records, list(iter_batch_headers(records)), config, partition_name="t-0")


def test_producer_keeps_every_codec() -> None:
    config = _config(compression_type="producer")
    assert target_codec(config) is None
    for codec in CompressionType:
        assert _run(_batch(codec), config).records is None


@pytest.mark.parametrize("topic", ["uncompressed", "gzip", "snappy", "lz4", "zstd"])
@pytest.mark.parametrize("sent", list(CompressionType))
def test_rebuilt_in_the_topic_codec_with_everything_kept(topic: str, sent: CompressionType) -> None:
    config = _config(compression_type=topic)
    records = _batch(
        sent, producer_id=42, producer_epoch=3, base_sequence=17, is_transactional=True
    )
    result = _run(records, config)
    wanted = target_codec(config)
    if sent == wanted:
        assert result.records is None  # already right: kept byte for byte
        return
    assert result.error == ErrorCode.NONE and result.records is not None
    header, decoded = decode_batch(result.records)
    original_header, original = decode_batch(records)
    assert header.compression == wanted
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (42, 3, 17)
    assert header.is_transactional and header.last_offset_delta == 49
    assert (header.base_timestamp, header.max_timestamp) == (
        original_header.base_timestamp,
        original_header.max_timestamp,
    )
    assert [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in decoded] == [
        (r.offset, r.timestamp, r.key, r.value, r.headers) for r in original
    ]


def test_too_large_once_uncompressed() -> None:
    config = _config(compression_type="uncompressed", max_message_bytes="2000")
    records = _batch(CompressionType.GZIP)
    assert len(records) < 2000
    result = _run(records, config)
    assert result.error == ErrorCode.MESSAGE_TOO_LARGE and result.records is None


def test_corrupt_compressed_body() -> None:
    records = _batch(CompressionType.LZ4)
    records[BATCH_HEADER_SIZE + 8 :] = b"\xff" * (len(records) - BATCH_HEADER_SIZE - 8)
    result = _run(records, _config(compression_type="gzip"))
    assert result.error in (ErrorCode.CORRUPT_MESSAGE, ErrorCode.INVALID_RECORD)
    assert result.records is None


def test_compacted_topics_name_each_keyless_record() -> None:
    config = _config(cleanup_policy="compact")
    rows = [(b"k", b"v"), (None, b"a"), (b"k2", b"v"), (None, b"b")]
    records = bytearray(build_batch(rows, compression=CompressionType.ZSTD))
    result = check_records(records, list(iter_batch_headers(records)), config, partition_name="t-0")
    assert result.error == ErrorCode.INVALID_RECORD
    assert [e.batch_index for e in result.record_errors] == [1, 3]
    keyed = bytearray(build_batch([(b"k", b"v")]))
    assert check_records(keyed, list(iter_batch_headers(keyed)), config, partition_name="t-0") == (
        Recompressed()
    )
