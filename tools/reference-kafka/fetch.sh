#!/usr/bin/env bash
# Resolves the Java side of the tests from Maven Central into target/lib folders:
#   tools/reference-kafka  -> Apache Kafka's broker (kafka_2.13) and every runtime jar it needs
#   tests/interop/java     -> the Java client (kafka-clients) for the interop program
# Usage: fetch.sh [PROJECT_DIR ...]   (default: both). Prints each lib folder on stdout.
#
# Idempotent and cheap when done: a stamp in each lib folder records the pom's checksum (and
# KAFKA_VERSION, when set), so a second run does not even start Maven. Maven keeps what it
# downloaded in ~/.m2, so a changed pom re-copies jars without downloading them again.
# Exit status: 0 done, 2 Maven or Java missing, anything else: Maven failed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
if [ $# -eq 0 ]; then
    set -- "$here" "$root/tests/interop/java"
fi

require_tools() {
    for tool in java mvn; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            echo "fetch.sh: '$tool' is not on PATH (Debian: openjdk-17-jdk-headless, maven)" >&2
            exit 2
        fi
    done
}

for project in "$@"; do
    project=$(cd "$project" && pwd)
    pom=$project/pom.xml
    lib=$project/target/lib
    stamp=$lib/.fetched
    mkdir -p "$project/target"
    # Two test sessions in one tree must not copy into the same folder at once.
    exec 9>"$project/target/.fetch.lock"
    if command -v flock >/dev/null 2>&1; then
        flock 9
    fi
    want="$(sha256sum "$pom" | cut -d' ' -f1) kafka.version=${KAFKA_VERSION:-pom}"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        echo "$lib"
        exec 9>&-
        continue
    fi
    require_tools
    args=(-q -B -Dstyle.color=never -f "$pom")
    if [ -n "${KAFKA_VERSION:-}" ]; then
        args+=("-Dkafka.version=$KAFKA_VERSION")
    fi
    rm -rf "$lib"
    started=$(date +%s)
    # Maven's own progress goes to stderr: stdout carries only the folder names.
    mvn "${args[@]}" dependency:copy-dependencies >&2
    echo "$want" >"$stamp"
    echo "fetch.sh: $(find "$lib" -name '*.jar' | wc -l) jars in $lib ($(( $(date +%s) - started )) s)" >&2
    echo "$lib"
    exec 9>&-
done
