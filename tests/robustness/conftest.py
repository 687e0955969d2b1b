"""Fixtures of the robustness tests: a figures recorder printed at the end of the run, and a
raised open-files limit (the broker subprocesses inherit it)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Generator
from pathlib import Path

import pytest

from .support import raise_nofile

_FIGURES: dict[str, dict[str, object]] = {}
FIGURES_FILE_ENV = "MMS_ROBUSTNESS_FIGURES"  # optional: also write the figures there as JSON

Figures = Callable[[str, object], None]


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    """``figures("kills survived", 6)``: a figure of this test, shown in the run's summary."""
    mine = _FIGURES.setdefault(request.node.name, {})

    def record(name: str, value: object) -> None:
        mine[name] = value

    return record


@pytest.fixture(autouse=True)
def _nofile_limit() -> Generator[None, None, None]:
    raise_nofile()
    yield


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("robustness figures")
    for test, values in _FIGURES.items():
        if not values:
            continue
        shown = ", ".join(f"{k}: {v}" for k, v in values.items())
        terminalreporter.write_line(f"{test}: {shown}")
    target = os.environ.get(FIGURES_FILE_ENV, "").strip()
    if target:
        Path(target).write_text(json.dumps(_FIGURES, indent=2, default=str) + "\n")
