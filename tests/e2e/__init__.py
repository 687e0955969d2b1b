"""End-to-end tests: real, unmodified Kafka clients against a real broker subprocess."""
