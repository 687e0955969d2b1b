"""A small network of Linux network namespaces for the partition tests (needs root).

Layout (one ``NetLab``)::

    root namespace: bridge mmsb<pid>x<k>   10.231.N.254/24  (the tests' own address)
                                           10.231.N.253/24  (services: ZooKeeper)
       |-- veth --> namespace mmsn<pid>x<k>n0 : 10.231.N.1/24
       |-- veth --> namespace mmsn<pid>x<k>n1 : 10.231.N.2/24
       '-- veth --> namespace mmsn<pid>x<k>n2 : 10.231.N.3/24

A broker runs in its namespace (``ip netns exec NS python -m ...``: ``launcher(i)``) and
listens on that namespace's address; the test process reaches every address through the
bridge. The bridge carries two addresses so that ZooKeeper (on the second) can be cut off
from a broker while the test process (whose connections leave from the first, the primary)
still reaches it.

A partition is an nftables table inside one namespace dropping packets to and from chosen
addresses (``block``); ``heal`` deletes the table. Drops, not rejects: the peers see silence,
as with a pulled cable, and find out through their own timeouts.

Every name carries the owning process id (``<pid>`` in hex) and a per-process counter, so
runs side by side never share a name; ``up()`` first removes what runs whose process is gone
left behind, and picks a /24 no interface uses (under a file lock, against parallel runs).
``down()`` removes everything and never raises. Not thread-safe.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import itertools
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from .broker_process import module_launcher

PREFIX = "mms"  # + b (bridge), v (root end of a veth), p (namespace end), n (namespace)
NAME = re.compile(r"^mms[bvpn](?P<pid>[0-9a-f]+)x\d+")
SUBNET_BASE = "10.231"  # 10.231.N.0/24, N the first third octet no interface uses
HOST_ADDRESS = 254  # the bridge's primary address: what the test process connects from
SERVICE_ADDRESS = 253  # the bridge's second address: ZooKeeper
PREFIX_LEN = 24
NFT_TABLE = "mms_partition"
LOCK_PATH = "/tmp/mms-netns.lock"
COMMAND_TIMEOUT_S = 20.0  # `ip` and `nft` answer in milliseconds; this is a hang

_labs = itertools.count()


class NetnsUnavailable(Exception):
    """The machine cannot build the lab (not root, or `ip`/`nft` missing)."""


def require_netns() -> None:
    """Skip the test without root, `ip` or `nft`; fail it instead when CI=true."""
    problem = netns_problem()
    if problem is None:
        return
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(problem + "; CI=true, so this is a failure, not a skip", pytrace=False)
    pytest.skip(problem)


def netns_problem() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return (
                f"required tool {tool!r} is not installed: apt-get install {package}, "
                "or run tools/install-test-deps.sh"
            )
    return None


def _run(*argv: str, stdin: str | None = None) -> str:
    """Run a command; CalledProcessError (with its stderr) when it fails."""
    done = subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, argv, done.stdout, done.stderr)
    return done.stdout


def _quiet(*argv: str) -> None:
    """Run a clean-up command whose failure (already gone) does not matter."""
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        _run(*argv)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(name: str) -> int | None:
    match = NAME.match(name)
    return int(match["pid"], 16) if match else None


def _links() -> list[str]:
    out = _run("ip", "-o", "link", "show")
    # "7: mmsv1a2bx0n1@if6: <...>": the name, without the peer suffix
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def _namespaces() -> list[str]:
    return [line.split()[0] for line in _run("ip", "netns", "list").splitlines() if line.strip()]


def clean_leftovers() -> None:
    """Delete the namespaces and links of runs whose process is gone (a crashed run), and
    the processes (its brokers) still running in those namespaces."""
    for ns in _namespaces():
        owner = _owner(ns)
        if owner is not None and not _pid_alive(owner):
            _kill_inside(ns)
            _quiet("ip", "netns", "delete", ns)
    for link in _links():
        owner = _owner(link)
        if owner is not None and not _pid_alive(owner):
            _quiet("ip", "link", "delete", link)


def _kill_inside(namespace: str) -> None:
    try:
        pids = [int(p) for p in _run("ip", "netns", "pids", namespace).split()]
    except (subprocess.SubprocessError, OSError, ValueError):
        return
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _used_third_octets() -> set[int]:
    used = set()
    for line in _run("ip", "-4", "-o", "addr", "show").splitlines():
        words = line.split()
        if "inet" not in words:
            continue
        net = ipaddress.ip_interface(words[words.index("inet") + 1]).network
        for octet in range(256):
            if ipaddress.ip_network(f"{SUBNET_BASE}.{octet}.0/{PREFIX_LEN}").overlaps(net):
                used.add(octet)
    return used


@contextlib.contextmanager
def _allocation_lock() -> Iterator[None]:
    with open(LOCK_PATH, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass
class NetHost:
    """One namespace on the bridge."""

    namespace: str
    address: str
    veth: str  # the root namespace's end, on the bridge
    blocked: set[str] = field(default_factory=set)

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.namespace]


class NetLab:
    """The bridge and ``size`` namespaces described in the module doc. ``up()``, then
    ``down()`` (always: a fixture's finally)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.tag = f"{os.getpid():x}x{next(_labs)}"
        self.bridge = f"{PREFIX}b{self.tag}"
        self.subnet = ""
        self.hosts: list[NetHost] = []
        self._created: list[str] = []  # namespaces and root links, in creation order

    # -- addresses ---------------------------------------------------------------------

    def _address(self, last_octet: int) -> str:
        return f"{self.subnet}.{last_octet}"

    @property
    def host_address(self) -> str:
        """Where the test process's connections come from."""
        return self._address(HOST_ADDRESS)

    @property
    def service_address(self) -> str:
        """A root-namespace address for services the namespaces use (ZooKeeper)."""
        return self._address(SERVICE_ADDRESS)

    def launcher(self, i: int) -> list[str]:
        """`ip netns exec NS` + the broker launcher: BrokerProcess(launcher=...)."""
        return [*self.hosts[i].exec_prefix(), *module_launcher()]

    # -- building and removing ---------------------------------------------------------

    def up(self) -> NetLab:
        clean_leftovers()
        try:
            with _allocation_lock():
                free = sorted(set(range(256)) - _used_third_octets())
                if not free:
                    raise NetnsUnavailable(f"every {SUBNET_BASE}.N.0/24 is in use")
                self.subnet = f"{SUBNET_BASE}.{free[0]}"
                self._add_bridge()
            for i in range(self.size):
                self._add_host(i)
        except BaseException:
            self.down()
            raise
        return self

    def _add_bridge(self) -> None:
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        self._created.append(self.bridge)
        # The primary address first: connections from the root namespace leave from it.
        for octet in (HOST_ADDRESS, SERVICE_ADDRESS):
            _run("ip", "addr", "add", f"{self._address(octet)}/{PREFIX_LEN}", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")

    def _add_host(self, i: int) -> None:
        namespace = f"{PREFIX}n{self.tag}n{i}"
        veth, peer = f"{PREFIX}v{self.tag}n{i}", f"{PREFIX}p{self.tag}n{i}"
        address = self._address(i + 1)
        _run("ip", "netns", "add", namespace)
        self._created.append(namespace)
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
        self._created.append(veth)
        _run("ip", "link", "set", veth, "master", self.bridge)
        _run("ip", "link", "set", veth, "up")
        _run("ip", "link", "set", peer, "netns", namespace)
        inside = ["ip", "netns", "exec", namespace, "ip"]
        _run(*inside, "addr", "add", f"{address}/{PREFIX_LEN}", "dev", peer)
        _run(*inside, "link", "set", peer, "up")
        _run(*inside, "link", "set", "lo", "up")
        self.hosts.append(NetHost(namespace, address, veth))

    def down(self) -> None:
        """Remove the namespaces (their nft tables go with them) and the links; never
        raises. Processes still inside a namespace keep it alive: stop them first."""
        namespaces = set(_namespaces_quiet())
        for name in reversed(self._created):
            if name in namespaces:
                _quiet("ip", "netns", "delete", name)
            else:
                _quiet("ip", "link", "delete", name)  # a veth pair goes with either end
        self._created.clear()
        self.hosts.clear()

    def __enter__(self) -> NetLab:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    # -- partitions --------------------------------------------------------------------

    def block(self, i: int, addresses: Iterable[str]) -> None:
        """Drop every packet between host ``i`` and ``addresses`` (added to what is already
        blocked there), in both directions, from inside host ``i``'s namespace."""
        host = self.hosts[i]
        host.blocked.update(addresses)
        self._write_rules(host)

    def heal(self, i: int) -> None:
        """Host ``i`` reaches everyone again."""
        host = self.hosts[i]
        host.blocked.clear()
        _quiet(*host.exec_prefix(), "nft", "delete", "table", "inet", NFT_TABLE)

    def heal_all(self) -> None:
        for i in range(len(self.hosts)):
            self.heal(i)

    def _write_rules(self, host: NetHost) -> None:
        peers = ", ".join(sorted(host.blocked))
        # Deleting the old table and adding the new one is one atomic nft transaction; the
        # `add table` first makes the delete valid when there is no table yet.
        ruleset = (
            f"add table inet {NFT_TABLE}\n"
            f"delete table inet {NFT_TABLE}\n"
            f"table inet {NFT_TABLE} {{\n"
            "  chain input {\n"
            "    type filter hook input priority 0; policy accept;\n"
            f"    ip saddr {{ {peers} }} drop\n"
            "  }\n"
            "  chain output {\n"
            "    type filter hook output priority 0; policy accept;\n"
            f"    ip daddr {{ {peers} }} drop\n"
            "  }\n"
            "}\n"
        )
        _run(*host.exec_prefix(), "nft", "-f", "-", stdin=ruleset)

    def rules(self, i: int) -> str:
        """Host ``i``'s nftables ruleset, for failure messages."""
        return _run(*self.hosts[i].exec_prefix(), "nft", "list", "ruleset")


def _namespaces_quiet() -> Sequence[str]:
    try:
        return _namespaces()
    except (subprocess.SubprocessError, OSError):
        return ()
