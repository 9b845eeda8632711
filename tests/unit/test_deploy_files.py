"""docker-compose.yml and Dockerfile: parsed and checked here, since no Docker engine runs in CI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_has_the_state_broker_store_and_a_single_migration_step() -> None:
    services = compose()["services"]
    assert {"postgres", "redis", "minio", "minio-init", "migrate"} <= set(services)
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    render = services["render"]["depends_on"]
    assert render["migrate"]["condition"] == "service_completed_successfully"
    assert render["minio-init"]["condition"] == "service_completed_successfully"
    for name in ("postgres", "redis", "minio"):
        assert "healthcheck" in services[name], name


def test_every_voicebatch_variable_in_compose_is_a_real_setting() -> None:
    fields = {f"VOICEBATCH_{name.upper()}" for name in Settings.model_fields}
    used = {
        key
        for service in compose()["services"].values()
        for key in (service.get("environment") or {})
        if key.startswith("VOICEBATCH_")
    }
    assert used and used <= fields, used - fields
    env = compose()["services"]["migrate"]["environment"]
    assert env["VOICEBATCH_STORAGE_URL"].startswith("s3://audio/")
    assert env["VOICEBATCH_DATABASE_URL"].startswith("postgresql+psycopg2://")


def test_dockerfile_copies_every_package_the_install_needs() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("pipeline", "workers", "api", "cli", "migrations"):
        assert f"COPY {package} ./{package}" in dockerfile, package
    assert 'ENTRYPOINT ["voicebatch"]' in dockerfile
