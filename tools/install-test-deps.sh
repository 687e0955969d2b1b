#!/usr/bin/env bash
# Installs what the tests use beyond Python packages: kcat and ZooKeeper (Debian), a JDK and Maven
# (Debian), ip and nft for the network-partition tests (Debian), and Apache Kafka plus the Java
# client (Maven Central) for the reference and interop tests.
# apt-get needs root (or sudo); without it, missing tools are reported and the tests that
# need them skip locally, and fail when CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v javac >/dev/null 2>&1 || missing+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
# The cluster tests run a real ZooKeeper from Debian's jars (tests/helpers/zookeeper.py).
[ -f /usr/share/java/zookeeper.jar ] || missing+=(zookeeper)
# The network-partition tests put brokers in namespaces (ip) and cut links with nftables (nft).
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || missing+=(iproute2)
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing+=(nftables)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = "0" ]; then
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo apt-get update -qq >/dev/null
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "install-test-deps: cannot install ${missing[*]} without root; those tests will skip" >&2
    fi
fi
# Apache Kafka (the reference broker) and the Java client from Maven Central; instant once cached.
if command -v mvn >/dev/null 2>&1; then
    bash tools/reference-kafka/fetch.sh >/dev/null
else
    echo "install-test-deps: no Maven; reference and Java interop tests will skip" >&2
fi
