"""Running the W3C's epubcheck on a file: Debian's `epubcheck` package (a jar, which
needs Java). Skips on a laptop without it; fails when CI is set (`.ci/run` installs it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.services import IN_CI

DEBIAN_JAR = Path("/usr/share/java/epubcheck.jar")


def epubcheck_command() -> list[str] | None:
    """How to run epubcheck here, or None. Debian's /usr/bin/epubcheck is the jar itself,
    run only where binfmt_misc knows jars (not in most containers): call Java on it."""
    java = shutil.which("java")
    if DEBIAN_JAR.is_file() and java:
        return [java, "-jar", str(DEBIAN_JAR)]
    found = shutil.which("epubcheck")
    if found is None:
        return None
    with open(found, "rb") as handle:
        is_jar = handle.read(2) == b"PK"
    if is_jar:
        return [java, "-jar", found] if java else None
    return [found]


def assert_epubcheck_passes(path: Path) -> str:
    """Run epubcheck on `path`; fail the test with its report unless it finds nothing:
    no fatal, error or warning message. Its report, for more assertions."""
    command = epubcheck_command()
    if command is None:
        message = "epubcheck is not installed (apt-get install epubcheck)"
        if IN_CI:
            pytest.fail(f"{message}; CI must provide it")
        pytest.skip(message)
    done = subprocess.run([*command, str(path)], capture_output=True, text=True, timeout=600)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "0 fatals / 0 errors / 0 warnings" in report, report
    return report
