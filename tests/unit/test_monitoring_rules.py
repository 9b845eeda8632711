"""The Prometheus rules, their unit tests, Alertmanager's routing and the Grafana
dashboards, checked with the real tools (Debian's prometheus and prometheus-alertmanager
packages: promtool, amtool). Without the tools a laptop skips; CI fails."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.services import IN_CI

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus"
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
GRAFANA = ROOT / "deploy" / "grafana"
OPERATIONS = ROOT / "docs" / "operations.md"


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        message = f"{name} not installed (apt-get install prometheus prometheus-alertmanager)"
        if IN_CI:
            pytest.fail(f"{message}; CI must provide it")
        pytest.skip(message)
    return found


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)


def rules(name: str) -> list[dict[str, Any]]:
    data = yaml.safe_load((RULES / name).read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def alert_names() -> set[str]:
    return {rule["alert"] for rule in rules("alerts.yml")}


def test_promtool_accepts_the_recording_and_alerting_rules() -> None:
    checked = run(tool("promtool"), "check", "rules", "deploy/prometheus/recording.yml",
                  "deploy/prometheus/alerts.yml")  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def unit_test_files() -> list[Path]:
    """The promtool unit test files: alerts_test.yml, and one per later area."""
    files = sorted((RULES / "tests").glob("*_test.yml"))
    assert RULES / "tests" / "alerts_test.yml" in files
    return files


def test_promtool_unit_tests_pass_and_show_every_alert_firing_and_quiet() -> None:
    files = unit_test_files()
    tested = run(tool("promtool"), "test", "rules", *map(str, files))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    fired: set[str] = set()
    quiet: set[str] = set()
    for file in files:
        for case in yaml.safe_load(file.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    assert fired == alert_names(), alert_names() - fired
    assert quiet == alert_names(), alert_names() - quiet


def test_a_broken_rule_fails_the_unit_tests(tmp_path: Path) -> None:
    """The unit tests can fail: with the fast-burn threshold raised, its firing case breaks."""
    promtool = tool("promtool")
    copy = tmp_path / "prometheus"
    shutil.copytree(RULES, copy)
    alerts = copy / "alerts.yml"
    alerts.write_text(alerts.read_text().replace("(14.4 * 0.01)", "(60 * 0.01)"))
    tested = run(promtool, "test", "rules", str(copy / "tests" / "alerts_test.yml"))
    assert tested.returncode != 0
    assert "VoicebatchTurnaroundBudgetBurnFast" in tested.stdout + tested.stderr


@pytest.mark.parametrize(
    ("rule", "broken", "alert"),
    [
        ("voicebatch:qa_flagged:ratio_rate30m > 0.1", "voicebatch:qa_flagged:ratio_rate30m > 0.5",
         "VoicebatchQaFlaggedShareHigh"),
        ("error_ratio_rate1h > (14.4 * 0.05)", "error_ratio_rate1h > (19 * 0.05)",
         "VoicebatchSpeechTtfbBudgetBurnFast"),
        ("voicebatch:speech_no_worker:ratio_rate5m > 0.1",
         "voicebatch:speech_no_worker:ratio_rate5m > 0.5", "VoicebatchSpeechNoWorker"),
        ("voicebatch:webhook_oldest_due_seconds:max > 600",
         "voicebatch:webhook_oldest_due_seconds:max > 6000", "VoicebatchWebhookSendersBehind"),
        ("voicebatch:webhook_failure:ratio_rate15m > 0.5",
         "voicebatch:webhook_failure:ratio_rate15m > 0.9", "VoicebatchWebhookFailureRate"),
    ],
)  # fmt: skip
def test_the_qa_speech_and_webhook_tests_fail_on_a_broken_threshold(
    tmp_path: Path, rule: str, broken: str, alert: str
) -> None:
    promtool = tool("promtool")
    copy = tmp_path / "prometheus"
    shutil.copytree(RULES, copy)
    alerts = copy / "alerts.yml"
    assert rule in alerts.read_text()
    alerts.write_text(alerts.read_text().replace(rule, broken))
    tested = run(promtool, "test", "rules", str(copy / "tests" / "qa_speech_webhooks_test.yml"))
    assert tested.returncode != 0
    assert alert in tested.stdout + tested.stderr


def test_every_alert_has_a_severity_alertmanager_routes_and_a_runbook() -> None:
    operations = OPERATIONS.read_text()
    for rule in rules("alerts.yml"):
        assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor == rule["alert"].lower()
        assert f"### {rule['alert']}" in operations, f"no runbook for {rule['alert']}"


def test_amtool_accepts_the_config_and_routes_by_severity() -> None:
    amtool = tool("amtool")
    checked = run(amtool, "check-config", str(ALERTMANAGER))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for severity, receiver in (("page", "page"), ("ticket", "ticket"), ("unknown", "ticket")):
        routed = run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}",
                     f"severity={severity}", "alertname=VoicebatchDependencyDown")  # fmt: skip
        assert routed.stdout.strip() == receiver, (severity, routed.stdout + routed.stderr)


def dashboards() -> dict[str, dict[str, Any]]:
    return {
        p.stem: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))
    }


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, PromQL) for every panel target."""
    return [
        (name, panel["title"], target["expr"])
        for name, board in dashboards().items()
        for panel in board["panels"]
        for target in panel["targets"]
    ]


def test_grafana_provisions_the_datasource_the_dashboards_name_and_four_dashboards() -> None:
    datasource = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "voicebatch.yml").read_text()
    )["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    boards = dashboards()
    assert sorted(b["title"] for b in boards.values()) == [
        "voicebatch / Overview",
        "voicebatch / QA, speech and webhooks",
        "voicebatch / Storage and cache",
        "voicebatch / Workers",
    ]
    assert len({b["uid"] for b in boards.values()}) == 4
    for board in boards.values():
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), board["title"]
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
            assert panel["targets"], panel["title"]


def test_every_dashboard_query_is_valid_promql_over_known_metrics(tmp_path: Path) -> None:
    """promtool parses each query (as a rule), and every metric a query names is a
    recording rule or a metric our code declares: a dashboard never shows a made-up name.
    (The e2e test tests/e2e/test_monitoring.py runs each one against real data.)"""
    promtool = tool("promtool")
    recorded = {rule["record"] for rule in rules("recording.yml")}
    sources = "".join(
        p.read_text() for folder in ("workers", "api") for p in (ROOT / folder).rglob("*.py")
    )
    declared = set(re.findall(r'"(voicebatch_[a-z_]+)"', sources))
    queries = panel_queries()
    assert len(queries) >= 30
    for dashboard, title, expr in queries:
        names = set(re.findall(r"\b(voicebatch[:_][a-z0-9_:]+)", expr))
        for name in names:
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            assert name in recorded or base in declared, f"{dashboard} / {title}: {name}"
    group = {"groups": [{"name": "panels", "rules": [
        {"record": f"panel:{i}", "expr": expr} for i, (_, _, expr) in enumerate(queries)
    ]}]}  # fmt: skip
    file = tmp_path / "dashboard_queries.yml"
    file.write_text(yaml.safe_dump(group))
    checked = run(promtool, "check", "rules", str(file))
    assert checked.returncode == 0, checked.stdout + checked.stderr
