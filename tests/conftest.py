"""Shared fixtures. Tests that need a service skip on a laptop without it and fail in CI.

The service fixtures (PostgreSQL, the S3 server) live in tests/support and are
registered here as plugins, so the integration, e2e and chaos suites share them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Settings, load_settings
from pipeline.runner import LocalRuntime

pytest_plugins = ["tests.support.postgres", "tests.support.s3"]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's VOICEBATCH_* variables or their data folder."""
    for key in list(os.environ):
        if key.startswith("VOICEBATCH_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("VOICEBATCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Embedded settings with the deterministic test engine and a private data folder."""
    return load_settings(engine="test-tone", data_dir=tmp_path / "data", output_format="wav")


@pytest.fixture
def runtime(settings: Settings) -> Iterator[LocalRuntime]:
    yield LocalRuntime.open(settings)


@pytest.fixture
def book(tmp_path: Path) -> Path:
    """A small Markdown book: a title, three chapters, several paragraphs."""
    path = tmp_path / "book.md"
    path.write_text(
        "# A Small Book\n\n"
        "## First Chapter\n\nThe first sentence is here. And a second one follows it.\n\n"
        "A new paragraph starts now. It has two sentences.\n\n"
        "## Second Chapter\n\nShort. Tiny. Words to speak in the second chapter of the book.\n\n"
        "## Third Chapter\n\nThe end of the book comes with this final paragraph of text.\n",
        encoding="utf-8",
    )
    return path


# --- the fault-injection suite's summary table ---------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reliability-report",
        metavar="PATH",
        help="write the chaos scenarios' summary table into this Markdown file "
        "(between its chaos-summary markers); `make chaos` writes docs/reliability.md",
    )


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    import sys

    harness = sys.modules.get("tests.chaos.report")
    if harness is None or not harness.RESULTS:
        return
    table = harness.summary_table(harness.RESULTS)
    failed = len(terminalreporter.stats.get("failed", []))
    if failed:
        terminalreporter.write_sep("=", f"fault injection: {failed} tests failed (see above)")
    else:
        terminalreporter.write_sep("=", "fault injection: every scenario's invariants held")
    terminalreporter.write_line(table)
    target = config.getoption("--reliability-report")
    if target and not failed:  # the page keeps the latest run in which everything held
        harness.write_report(Path(target), table)
        terminalreporter.write_line(f"summary written to {target}")
