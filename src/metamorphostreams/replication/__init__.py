"""Replication: the leader's view of its followers, and the followers' fetchers."""
