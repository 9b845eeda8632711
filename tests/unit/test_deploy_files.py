"""docker-compose.yml, Dockerfile and deploy/prometheus.yml: parsed and checked here, since no
Docker engine runs in CI."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer
import yaml

from pipeline.config import Settings

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "voicebatch:latest"
APP_SERVICES = ("api", "worker-render", "worker-assemble", "flower", "reconciler", "exporter")


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / name).read_text())
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    return load("docker-compose.yml")["services"]


def voicebatch_commands() -> dict[str, list[str]]:
    """The voicebatch argv of every service that runs the image: command, or entrypoint args."""
    found: dict[str, list[str]] = {}
    for name, svc in services().items():
        if svc.get("image") == IMAGE:
            entry = svc.get("entrypoint", ["voicebatch"])
            assert entry[0] == "voicebatch", name
            found[name] = entry[1:] + svc.get("command", [])
    return found


def option(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_compose_has_the_state_broker_store_and_a_single_migration_step() -> None:
    svcs = services()
    assert {"postgres", "redis", "minio", "minio-init", "migrate", "rabbitmq"} <= set(svcs)
    assert svcs["migrate"]["command"] == ["db", "upgrade"]
    assert svcs["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    render = svcs["render"]["depends_on"]
    assert render["migrate"]["condition"] == "service_completed_successfully"
    assert render["minio-init"]["condition"] == "service_completed_successfully"
    for name in ("postgres", "redis", "minio", "rabbitmq", "api"):
        assert "healthcheck" in svcs[name], name
    assert "--appendonly" in svcs["redis"]["command"]
    assert svcs["rabbitmq"]["profiles"] == ["rabbitmq"]
    assert "local/audio" in svcs["minio-init"]["command"][0]


def test_every_service_has_an_image_and_voicebatch_is_built_once() -> None:
    svcs = services()
    for name, svc in svcs.items():
        assert "image" in svc or "build" in svc, name
    assert [name for name, svc in svcs.items() if "build" in svc] == ["migrate"]
    for name in ("migrate", "render", *APP_SERVICES):
        assert svcs[name]["image"] == IMAGE, name


def test_every_voicebatch_variable_in_compose_is_a_real_setting() -> None:
    fields = {f"VOICEBATCH_{name.upper()}" for name in Settings.model_fields}
    used = {
        key
        for service in services().values()
        for key in (service.get("environment") or {})
        if key.startswith("VOICEBATCH_")
    }
    assert used and used <= fields, used - fields
    env = services()["api"]["environment"]
    assert env["VOICEBATCH_STORAGE_URL"].startswith("s3://audio/")
    assert env["VOICEBATCH_DATABASE_URL"].startswith("postgresql+psycopg2://")
    assert env["VOICEBATCH_BROKER_URL"] == "${VOICEBATCH_BROKER_URL:-redis://redis:6379/0}"
    assert env["VOICEBATCH_REDIS_URL"].startswith("redis://redis:6379/")
    # API and render worker agree on the engine (a job planned for one engine is refused
    # by a worker running another), and both see the model folders
    render = services()["worker-render"]
    assert render["environment"]["VOICEBATCH_ENGINE"] == env["VOICEBATCH_ENGINE"]
    assert env["VOICEBATCH_ENGINE"] == "${VOICEBATCH_ENGINE:-maya1}"
    for service in (render, services()["api"]):
        assert "./models:/models:ro" in service["volumes"]
        assert service["environment"]["VOICEBATCH_MAYA1_MODEL_DIR"].startswith("/models/")
        assert service["environment"]["VOICEBATCH_SNAC_DIR"].startswith("/models/")
    command = render["command"]
    assert command[command.index("--batch-size") + 1] == "64"
    assert command[command.index("--precision") + 1] == "bf16"


def test_every_command_and_option_is_a_real_cli_command() -> None:
    from cli.app import app  # here, so the other checks run while the CLI is being edited

    root: Any = typer.main.get_command(app)
    commands: dict[str, Any] = {
        name: root.get_command(None, name) for name in root.list_commands(None)
    }
    used = voicebatch_commands()
    assert {argv[0] for argv in used.values()} == {
        "db",
        "render",
        "api",
        "worker",
        "flower",
        "reconcile",
        "exporter",
    }
    for name, argv in used.items():
        command = commands.get(argv[0])
        assert command is not None, f"{name}: no command {argv[0]!r}"
        if hasattr(command, "commands"):  # a group, like db
            command = command.commands.get(argv[1])
            assert command is not None, f"{name}: no command {argv[:2]}"
        known = {opt for param in command.params for opt in param.opts}
        flags = {word for word in argv if word.startswith("--")}
        assert flags <= known, f"{name}: {flags - known}"


def test_app_services_wait_for_the_migration_and_depend_only_on_real_services() -> None:
    svcs = services()
    for name, svc in svcs.items():
        for target in svc.get("depends_on") or {}:
            assert target in svcs, f"{name} depends on undefined {target}"
    for name in APP_SERVICES:
        deps = svcs[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["redis"]["condition"] == "service_healthy", name


def test_workers_take_their_queues_and_the_render_worker_reserves_a_gpu() -> None:
    argv = voicebatch_commands()
    assert option(argv["worker-render"], "--queues") == "render"
    assert option(argv["worker-assemble"], "--queues") == "assemble,webhooks"
    render = services()["worker-render"]
    devices = render["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    grace = int(render["environment"]["VOICEBATCH_WORKER_GRACE_SECONDS"])
    assert int(render["stop_grace_period"].removesuffix("s")) > grace


def test_prometheus_scrapes_ports_the_services_listen_on() -> None:
    argv = voicebatch_commands()
    listening = {(name, option(argv[name], "--metrics-port")) for name in argv if "worker" in name}
    # the API's metrics on a port of their own, never on the API's port
    listening.add(("api", option(argv["api"], "--metrics-port")))
    assert option(argv["api"], "--metrics-port") != option(argv["api"], "--port")
    reconciler = services()["reconciler"]["environment"]
    listening.add(("reconciler", reconciler["VOICEBATCH_WORKER_METRICS_PORT"]))
    listening.add(("exporter", option(argv["exporter"], "--port")))
    assert len(listening) == 5
    scraped: set[tuple[str, ...]] = set()
    for job in load("deploy/prometheus.yml")["scrape_configs"]:
        for static in job.get("static_configs", []):
            scraped |= {tuple(target.split(":")) for target in static["targets"]}
        for dns in job.get("dns_sd_configs", []):
            scraped |= {(name, str(dns["port"])) for name in dns["names"]}
    assert scraped == listening
    mounts = services()["prometheus"]["volumes"]
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts


def test_flower_password_comes_from_the_environment() -> None:
    env = services()["flower"]["environment"]
    assert re.fullmatch(r"\$\{FLOWER_PASSWORD:\?[^}]+\}", env["VOICEBATCH_FLOWER_PASSWORD"])


def test_dockerfile_copies_every_package_and_runs_as_a_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("pipeline", "workers", "api", "cli", "migrations"):
        assert f"COPY {package} ./{package}" in dockerfile, package
    assert "pip install '.[server,maya1,onnx]'" in dockerfile
    assert 'ENTRYPOINT ["voicebatch"]' in dockerfile
    users = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^EXPOSE 8000 5555 9100$", dockerfile, re.MULTILINE)


def test_compose_runs_the_monitoring_with_the_rules_dashboards_and_alert_routing() -> None:
    svcs = services()
    prometheus = load("deploy/prometheus.yml")
    mounts = svcs["prometheus"]["volumes"]
    assert "./deploy/prometheus:/etc/prometheus/rules:ro" in mounts
    for rule_file in prometheus["rule_files"]:
        assert rule_file.startswith("/etc/prometheus/rules/")
        assert (ROOT / "deploy/prometheus" / rule_file.rsplit("/", 1)[1]).is_file(), rule_file
    (target,) = prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host == "alertmanager" and f"{port}:{port}" in svcs["alertmanager"]["ports"]
    config = svcs["alertmanager"]["command"][0].split("=", 1)[1]
    assert f"./deploy/alertmanager/alertmanager.yml:{config}:ro" in svcs["alertmanager"]["volumes"]
    receivers = load("deploy/alertmanager/alertmanager.yml")["receivers"]
    for receiver in receivers:
        for hook in receiver["webhook_configs"]:
            assert hook["url"].startswith("http://alert-webhook:8080/"), hook
    assert svcs["alert-webhook"]["environment"]["HTTP_PORT"] == "8080"
    grafana = svcs["grafana"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana["volumes"]
    assert re.fullmatch(
        r"\$\{GRAFANA_PASSWORD:\?[^}]+\}", grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    )
    # one exporter and one reconciler per deployment: never scaled with the workers
    for name in ("exporter", "reconciler"):
        assert "deploy" not in svcs[name] or svcs[name]["deploy"].get("replicas", 1) == 1
