"""Interop tests: other implementations' clients against our broker.

`reference_kafka` (Apache Kafka, one per session) runs the same programs as a check of the
programs themselves: a failure against both is the test's fault, against us only, ours.
"""

from __future__ import annotations

from helpers.reference_kafka import reference_kafka

__all__ = ["reference_kafka"]
