"""Run a real `mms broker` as a subprocess on a loopback port, as the end-to-end tests need it.

The broker's command-line contract (the only thing this module relies on):

    python -m metamorphostreams.cli.main broker --data-dir DIR --host H --port P
        [--broker-id N] [--config FILE] [--set key=value ...]

prints one line containing ``ready`` on stdout once it accepts connections, and exits 0 on
SIGTERM/SIGINT after a clean shutdown.
"""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import pytest

READY_TIMEOUT_S = 20.0  # a Python broker starts in well under a second; this is a hang
REFERENCE_READY_TIMEOUT_S = 120.0  # a JVM broker formats storage and boots in seconds, not ms
STOP_TIMEOUT_S = 30.0  # clean shutdown flushes and closes segments; anything longer is a hang
STDERR_TAIL_LINES = 200  # enough to see a traceback and what led to it, not the whole run

HOST = "127.0.0.1"

_live: weakref.WeakSet[BrokerProcess] = weakref.WeakSet()


class BrokerStartError(AssertionError):
    """The broker exited or stayed silent instead of printing its ready line."""


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago (the kernel picks it; racy only against strangers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


LAUNCHER_ENV = "MMS_E2E_LAUNCHER"
"""Replaces `python -m metamorphostreams.cli.main`, e.g. with reference_kafka.py (see there)."""


def module_launcher() -> list[str]:
    """`python -m metamorphostreams.cli.main` with the interpreter running the tests.

    With $MMS_E2E_LAUNCHER set, that command instead: the suite then runs against whatever
    implements the same `broker` contract (Apache Kafka through reference_kafka.py).
    """
    override = os.environ.get(LAUNCHER_ENV, "").strip()
    if override:
        # Brokers run with their log folder as working directory: anchor relative paths
        # (`python tests/helpers/reference_kafka.py`) where pytest was started.
        return [
            str(Path(word).resolve())
            if not Path(word).is_absolute() and Path(word).exists()
            else word
            for word in shlex.split(override)
        ]
    return [sys.executable, "-m", "metamorphostreams.cli.main"]


def launcher_overridden() -> bool:
    return bool(os.environ.get(LAUNCHER_ENV, "").strip())


def console_script() -> Path:
    """The installed `mms` console script next to the running interpreter."""
    return Path(sys.executable).parent / "mms"


def broker_command(
    data_dir: Path,
    *,
    host: str,
    port: int,
    broker_id: int,
    settings: Mapping[str, object],
    config_file: Path | None,
    launcher: Sequence[str] | None = None,
) -> list[str]:
    """The argv that starts a broker (by default through the module entry point)."""
    argv = [
        *(launcher if launcher is not None else module_launcher()),
        "broker",
        "--data-dir",
        str(data_dir),
        "--host",
        host,
        "--port",
        str(port),
        "--broker-id",
        str(broker_id),
    ]
    if config_file is not None:
        argv += ["--config", str(config_file)]
    for key, value in settings.items():
        argv += ["--set", f"{key}={_config_value(value)}"]
    return argv


def _config_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class BrokerProcess:
    """One broker subprocess bound to a fixed loopback port and data directory.

    stdout is read by a daemon thread (so the pipe never fills) and copied to
    ``<log_dir>/broker-stdout.log``; stderr goes straight to ``<log_dir>/broker-stderr.log``.
    Both files are appended to across restarts, with a marker line per start.
    Not thread-safe: drive it from the test's thread.
    """

    def __init__(
        self,
        data_dir: Path,
        log_dir: Path,
        *,
        host: str = HOST,
        port: int | None = None,
        broker_id: int = 0,
        settings: Mapping[str, object] | None = None,
        config_file: Path | None = None,
        ready_timeout: float | None = None,
        extra_env: Mapping[str, str] | None = None,
        launcher: Sequence[str] | None = None,
        unbuffered: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.broker_id = broker_id
        self.settings: dict[str, object] = dict(settings or {})
        self.config_file = config_file
        if ready_timeout is None:
            ready_timeout = REFERENCE_READY_TIMEOUT_S if launcher_overridden() else READY_TIMEOUT_S
        self.ready_timeout = ready_timeout
        self.extra_env = dict(extra_env or {})
        self.launcher = list(launcher) if launcher is not None else None
        self.unbuffered = unbuffered
        self.stdout_path = self.log_dir / "broker-stdout.log"
        self.stderr_path = self.log_dir / "broker-stderr.log"
        self.starts = 0
        self.ready_line: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdout_thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stdout_lock = threading.Lock()
        self._stdout_lines: list[str] = []

    # ----------------------------------------------------------------- properties

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def argv(self) -> list[str]:
        return broker_command(
            self.data_dir,
            host=self.host,
            port=self.port,
            broker_id=self.broker_id,
            settings=self.settings,
            config_file=self.config_file,
            launcher=self.launcher,
        )

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> BrokerProcess:
        """Start the broker and block until it prints its ready line (or fail loudly)."""
        if self.running:
            raise RuntimeError(f"broker already running (pid {self.pid})")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self.ready_line = None
        self._ready.clear()
        argv = self.argv()
        marker = f"===== start #{self.starts}: {' '.join(argv)}\n"
        with open(self.stdout_path, "a", encoding="utf-8") as out:
            out.write(marker)
        env = dict(os.environ)
        # The ready line must arrive through a pipe; unbuffered output keeps a forgotten
        # flush() from turning into a 20 s timeout everywhere (the CLI contract test runs
        # the console script without this crutch).
        if self.unbuffered:
            env["PYTHONUNBUFFERED"] = "1"
        else:
            env.pop("PYTHONUNBUFFERED", None)
        env.update(self.extra_env)
        with open(self.stderr_path, "ab") as err:
            err.write(marker.encode())
            err.flush()
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                cwd=self.log_dir,
                # Its own session: a Ctrl-C in the terminal reaches pytest, which then stops
                # the broker through the fixture, instead of racing it.
                start_new_session=True,
            )
        _live.add(self)
        self._stdout_thread = threading.Thread(
            target=self._pump_stdout,
            args=(self._proc.stdout,),
            name=f"broker-stdout-{self.port}",
            daemon=True,
        )
        self._stdout_thread.start()
        self._wait_ready()
        return self

    def _pump_stdout(self, stream: IO[bytes] | None) -> None:
        if stream is None:
            return
        with open(self.stdout_path, "a", encoding="utf-8") as out:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace")
                out.write(line)
                out.flush()
                with self._stdout_lock:
                    self._stdout_lines.append(line)
                if "ready" in line and not self._ready.is_set():
                    self.ready_line = line.rstrip("\n")
                    self._ready.set()
        stream.close()

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.ready_timeout
        while not self._ready.wait(0.05):
            if self._proc.poll() is not None:
                # Let the pump thread copy whatever stdout the broker wrote before dying.
                if self._stdout_thread is not None:
                    self._stdout_thread.join(2)
                if self._ready.is_set():
                    break
                raise BrokerStartError(
                    f"broker exited with code {self._proc.returncode} before printing 'ready'\n"
                    + self.diagnostics()
                )
            if time.monotonic() > deadline:
                _kill_group(self._proc)
                self._proc.wait(10)
                raise BrokerStartError(
                    f"broker printed no 'ready' line within {self.ready_timeout:.0f} s\n"
                    + self.diagnostics()
                )
        if self._proc.poll() is not None:
            raise BrokerStartError(
                f"broker printed 'ready' but exited with code {self._proc.returncode}\n"
                + self.diagnostics()
            )

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, wait, and assert a clean exit (code 0)."""
        self._signal_and_wait(signal.SIGTERM, timeout)

    def interrupt(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGINT (what Ctrl-C sends), wait, and assert a clean exit (code 0)."""
        self._signal_and_wait(signal.SIGINT, timeout)

    def _signal_and_wait(self, signum: signal.Signals, timeout: float) -> None:
        proc = self._require_proc()
        if proc.poll() is None:
            proc.send_signal(signum)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                proc.wait(10)
                self._join_pump()
                raise AssertionError(
                    f"broker did not exit within {timeout:.0f} s of {signum.name}\n"
                    + self.diagnostics()
                ) from None
        self._join_pump()
        if proc.returncode != 0:
            raise AssertionError(
                f"broker exited with code {proc.returncode} after {signum.name}, expected 0\n"
                + self.diagnostics()
            )

    def kill(self) -> None:
        """SIGKILL to the broker's whole process group: the crash case (no clean shutdown)."""
        proc = self._require_proc()
        _kill_group(proc)
        proc.wait(10)
        self._join_pump()

    def restart(self) -> BrokerProcess:
        """Clean stop (if still running), then start again on the same data dir and port."""
        if self.running:
            self.stop()
        return self.start()

    def close(self) -> None:
        """Make sure the process is gone; never raises (the fixtures' last resort)."""
        proc = self._proc
        if proc is None:
            return
        _kill_group(proc)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._join_pump()
        _live.discard(self)

    def __enter__(self) -> BrokerProcess:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require_proc(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RuntimeError("broker was never started")
        return self._proc

    def _join_pump(self) -> None:
        if self._stdout_thread is not None:
            self._stdout_thread.join(5)

    # ----------------------------------------------------------------- diagnostics

    def stdout_text(self) -> str:
        with self._stdout_lock:
            return "".join(self._stdout_lines)

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stderr_tail(self, lines: int = STDERR_TAIL_LINES) -> str:
        return "\n".join(self.stderr_text().splitlines()[-lines:])

    def diagnostics(self) -> str:
        return (
            f"--- broker {self.bootstrap} (data {self.data_dir})\n"
            f"--- stdout:\n{self.stdout_text()[-4000:]}"
            f"--- stderr ({self.stderr_path}), last {STDERR_TAIL_LINES} lines:\n"
            f"{self.stderr_tail()}\n"
        )


BrokerFactory = Callable[..., BrokerProcess]
"""What the `broker_factory` fixture returns: `factory(settings, **BrokerProcess options)`."""


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group the broker leads (it was started in its own session), so a
    launcher's children (a JVM behind reference_kafka.py) die with it."""
    if proc.returncode is not None:
        # Already reaped: its pid, and so the group id, may belong to someone else by now.
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _kill_leftovers() -> None:
    for broker in list(_live):
        broker.close()


atexit.register(_kill_leftovers)


def require_tool(name: str) -> str:
    """The path of an external tool; without it the test skips, or fails when CI=true."""
    path = shutil.which(name)
    if path is None:
        reason = f"required tool {name!r} is not installed (not on PATH)"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(reason + "; CI=true, so this is a failure, not a skip")
        pytest.skip(reason)
    return path
