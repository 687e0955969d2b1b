"""Interop tests: other implementations' clients against our broker.

`reference_kafka` (Apache Kafka, one per session) runs the same programs as a check of the
programs themselves: a failure against both is the test's fault, against us only, ours.

`java_programs` compiles the Java programs of tests/interop/java/ (javac against the jars
that tools/reference-kafka/fetch.sh puts in tests/interop/java/target/lib from Maven
Central, once) and gives the start of the command that runs one: append the main class.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from helpers.reference_kafka import (
    ReferenceKafkaUnavailable,
    ensure_libs,
    java_executable,
    reference_kafka,
    unavailable,
)

__all__ = ["java_programs", "reference_kafka"]

JAVA_PROJECT = Path(__file__).resolve().parent / "java"
COMPILE_LIMIT_S = 120.0


@pytest.fixture(scope="session")
def java_programs() -> list[str]:
    """`java ... -cp CLASSES:LIBS/*`, the programs compiled on first use (or when changed).

    Without Java, javac or the jars the test skips, and fails when CI=true.
    """
    try:
        java = java_executable()
        libs = ensure_libs(JAVA_PROJECT)
    except ReferenceKafkaUnavailable as exc:
        unavailable(f"the Java client is unavailable: {exc}")
    javac = Path(java).with_name("javac")
    if not javac.exists():
        unavailable(f"no javac next to {java} (a JRE without the JDK)")
    sources = sorted((JAVA_PROJECT / "src" / "main" / "java").rglob("*.java"))
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.read_bytes())
    digest.update("\n".join(sorted(p.name for p in libs.glob("*.jar"))).encode())
    # One folder per source version, filled under a temporary name and renamed into place,
    # so concurrent sessions never run half-written classes.
    classes = JAVA_PROJECT / "target" / f"classes-{digest.hexdigest()[:16]}"
    if not classes.exists():
        scratch = Path(tempfile.mkdtemp(prefix="classes-", dir=JAVA_PROJECT / "target"))
        done = subprocess.run(
            [str(javac), "-d", str(scratch), "-cp", f"{libs}/*", *map(str, sources)],
            capture_output=True,
            text=True,
            timeout=COMPILE_LIMIT_S,
            check=False,
        )
        if done.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            raise AssertionError(f"javac failed:\n{done.stdout}\n{done.stderr}")
        try:
            scratch.rename(classes)
        except OSError:  # another session got there first
            shutil.rmtree(scratch, ignore_errors=True)
    return [
        java,
        "-Xmx256m",
        "-XX:TieredStopAtLevel=1",
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
        "-cp",
        f"{classes}:{libs}/*",
    ]
