"""The sample project's conftest.

The `kafka_bootstrap` fixture comes from the metamorphostreams pytest plugin (installed with
the package), so a real project needs nothing here. This file only keeps the surrounding
metamorphostreams suite from collecting the sample as part of itself: the suite runs it as
its own pytest session (tests/client/test_pytest_plugin.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if config.rootpath.resolve() != HERE:
        return True
    return None
