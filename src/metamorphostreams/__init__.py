"""Metamorphostreams: Apache Kafka re-implemented in Python."""

__version__ = "0.1.0"
