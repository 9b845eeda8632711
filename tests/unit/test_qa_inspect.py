"""`voicebatch inspect` with QA on: the estimate includes QA's time."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cli.app import app
from pipeline.plan.inspect import QA_REALTIME

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "aesop.md"


def test_the_estimate_adds_qa_time_when_qa_is_on(tmp_path: Path) -> None:
    env = {"VOICEBATCH_DATA_DIR": str(tmp_path / "data")}
    off = CliRunner().invoke(app, ["inspect", str(EXAMPLE), "--json"], env=env)
    assert off.exit_code == 0, off.output
    assert json.loads(off.output)["qa_seconds"] is None
    on = CliRunner().invoke(
        app, ["inspect", str(EXAMPLE), "--json"], env={**env, "VOICEBATCH_QA": "1"}
    )
    assert on.exit_code == 0, on.output
    found = json.loads(on.output)
    assert found["qa_seconds"] == round(found["audio_seconds"] / QA_REALTIME, 1)
    shown = CliRunner().invoke(app, ["inspect", str(EXAMPLE)], env={**env, "VOICEBATCH_QA": "1"})
    assert "QA adds about" in shown.output
