#!/usr/bin/env bash
# Installs the system tools the tests use (kcat from Debian) when they are missing.
# Needs root (or sudo) for apt-get; without it, prints what is missing and goes on: the tests
# that need the tool then skip locally, and fail when CI=true.
set -euo pipefail
missing=()
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ]; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq >/dev/null
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
    echo "install-test-deps: cannot install ${missing[*]} without root; those tests will skip" >&2
fi
