"""Robustness: crashes, torn and corrupt files, full disks, fuzzed frames, load and abuse,
graceful shutdown. Each test tries to break a real broker subprocess and then checks that
nothing acknowledged was lost and that everyone else kept being served."""
