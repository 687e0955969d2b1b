"""The machine's loopback TCP bandwidth: what a broker serving Fetch could at best reach.

A sender thread pushes a page-cached file through `os.sendfile` (as a broker serving Fetch
does) over a 127.0.0.1 connection; the receiver reads with `recv_into` into a preallocated
buffer (as the Fetch load generator does). Both calls release the GIL, so two threads stand
in for two processes.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time

FILE_BYTES = 64 * 1024 * 1024  # stays in the page cache; sent over and over
SEND_CHUNK = 8 * 1024 * 1024
RECV_CHUNK = 4 * 1024 * 1024


def loopback_mbps(seconds: float = 3.0) -> float:
    """MB/s (10^6 bytes) received over loopback in `seconds`."""
    with tempfile.TemporaryFile() as f:
        block = os.urandom(1 << 20)
        for _ in range(FILE_BYTES // len(block)):
            f.write(block)
        f.flush()
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        stop = threading.Event()

        def send() -> None:
            conn, _ = listener.accept()
            with conn:
                try:
                    while not stop.is_set():
                        offset = 0
                        while offset < FILE_BYTES and not stop.is_set():
                            offset += os.sendfile(conn.fileno(), f.fileno(), offset, SEND_CHUNK)
                except OSError:
                    pass  # the receiver closed first: the run is over

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        buf = memoryview(bytearray(RECV_CHUNK))
        total = 0
        with socket.create_connection(("127.0.0.1", port)) as sock:
            begin = time.monotonic()
            while (now := time.monotonic()) - begin < seconds:
                total += sock.recv_into(buf)
            stop.set()
        sender.join(5)
        listener.close()
    return total / (now - begin) / 1e6


if __name__ == "__main__":
    print(f"loopback TCP (sendfile -> recv_into): {loopback_mbps():.0f} MB/s")
