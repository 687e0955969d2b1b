"""Helpers shared by the end-to-end tests: a broker subprocess and a tiny raw-wire client."""
