"""A private asyncio event loop on a daemon thread, for the synchronous facades.

Each sync client owns one: its coroutines run there, and the caller's thread blocks on
``run()``. Callbacks that must run in the caller's thread (rebalance listeners, which may
call back into the client) go through ``CallbackPump``. Thread-safe.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["CallbackPump", "LoopThread"]


class LoopThread:
    """An event loop running forever on its own daemon thread until ``stop()``."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    @property
    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if self.in_loop_thread:
            coro.close()
            raise RuntimeError(
                "a synchronous client was called from its own I/O thread (from a delivery "
                "callback?); use the client's async API there"
            )
        return self.submit(coro).result(timeout)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.in_loop_thread:
            self._thread.join(10)


_DONE = object()


class CallbackPump:
    """Runs coroutines on a LoopThread while executing, in the calling thread, the callbacks
    they hand over with ``call_in_caller`` (used for rebalance listeners)."""

    def __init__(self, thread: LoopThread) -> None:
        self._thread = thread
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._active = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        with self._lock:
            self._active += 1
        future = self._thread.submit(coro)
        future.add_done_callback(lambda _f: self._requests.put(_DONE))
        try:
            while True:
                item = self._requests.get()
                if item is _DONE:
                    if future.done():
                        return future.result()
                    continue
                fn, args, reply = item
                try:
                    reply.set_result(fn(*args))
                except BaseException as exc:
                    reply.set_exception(exc)
        finally:
            with self._lock:
                self._active -= 1

    def call_in_caller(self, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        """From the loop thread: run ``fn(*args)`` in the thread inside ``run()``, await it.

        With no thread inside ``run()`` (a callback fired by a background task), run it here.
        """
        reply: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            active = self._active
        if not active:
            try:
                reply.set_result(fn(*args))
            except BaseException as exc:
                reply.set_exception(exc)
        else:
            self._requests.put((fn, args, reply))
        return asyncio.wrap_future(reply)
