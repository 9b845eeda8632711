"""deploy/k8s: every overlay builds with `kubectl kustomize`, its core objects validate
against the Kubernetes 1.30 schemas (kubernetes-validate), its KEDA and Prometheus
Operator objects against their CRDs' schemas (../shared/schemas), and the properties a
fleet of spot GPU workers depends on hold in what is rendered. Skips on a laptop without
kubectl; fails in CI."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.autoscale_model import MESSAGE_AUDIO_S, load_policy, target_per_replica
from bench.sim_autoscale import (
    ASSEMBLE_WAIT_S,
    ASSEMBLE_X,
    GPU,
    ITEM_AUDIO_S,
    RENDER_WAIT_S,
    SCALED_OBJECTS,
)
from pipeline.config import Settings
from tests.support.k8s_schemas import crd_validator, validate_core
from tests.support.services import IN_CI
from workers import dispatch

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("base", "overlays/gpu-spot", "overlays/rabbitmq")
WORKERS = ("worker-render", "worker-assemble")
CRD_GROUPS = ("keda.sh/", "monitoring.coreos.com/")


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} not found: install Debian's kubernetes-client (.ci/run does)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@functools.cache
def _build(overlay: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [need("kubectl"), "kustomize", str(K8S / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, f"kubectl kustomize {overlay}:\n{out.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def build(overlay: str) -> list[dict[str, Any]]:
    return list(_build(overlay))


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        f"{d['kind']}/{d['metadata']['name']}": d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet")
    }


def env_of(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """A container's plain environment: its ConfigMaps' data, then its own `value`s."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        env.update(find(docs, "ConfigMap", name)["data"])
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_builds_and_validates_against_the_schemas(overlay: str) -> None:
    docs = build(overlay)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "Job", "ScaledObject"} <= kinds
    assert {"PodDisruptionBudget", "NetworkPolicy", "PodMonitor", "ConfigMap"} <= kinds
    for doc in docs:
        where = f"{overlay}: {doc['kind']}/{doc['metadata']['name']}"
        if doc["apiVersion"].startswith(CRD_GROUPS):
            errors = [e.message for e in crd_validator(doc).iter_errors(doc)]
            assert not errors, f"{where}: {errors}"
        else:
            validate_core(doc, where)


def test_the_schema_checks_catch_a_wrong_field() -> None:
    docs = build("base")
    scaled = find(docs, "ScaledObject", "worker-render")
    wrong = {**scaled, "spec": {**scaled["spec"], "maxReplicas": 8}}  # HPA's name, not KEDA's
    assert list(crd_validator(wrong).iter_errors(wrong))
    typo = {**scaled, "spec": {**scaled["spec"], "minReplicaCount": "zero"}}
    assert list(crd_validator(typo).iter_errors(typo))
    deployment = find(docs, "Deployment", "api")
    spec = deployment["spec"]
    broken = {**deployment, "spec": {**spec, "replica": 2}}
    with pytest.raises(AssertionError, match="replica"):
        validate_core(broken, "Deployment/api")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(overlay: str) -> None:
    for where, spec in pod_specs(build(overlay)).items():
        for container in spec.get("initContainers", []) + spec["containers"]:
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(part, {})), (where, part)


SECRET_NAMES = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|DATABASE_URL|BROKER_URL|REDIS_URL")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_never_inlined(overlay: str) -> None:
    docs = build(overlay)
    assert not [d for d in docs if d["kind"] == "Secret"], "a Secret in the manifests"
    for where, spec in pod_specs(docs).items():
        for container in spec["containers"]:
            for entry in container.get("env", []):
                if SECRET_NAMES.search(entry["name"]):
                    ref = entry.get("valueFrom", {}).get("secretKeyRef", {})
                    assert ref.get("name") == "voicebatch-secrets", (where, entry["name"])
    for config in (d for d in docs if d["kind"] == "ConfigMap"):
        for key, value in config["data"].items():
            assert not SECRET_NAMES.search(key), key
            assert not re.search(r"://[^/@\s]+:[^/@\s]+@", value), f"credentials in {key}"
    for auth in (d for d in docs if d["kind"] == "TriggerAuthentication"):
        assert set(auth["spec"]) == {"secretTargetRef"}, auth["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_voicebatch_variable_is_a_real_setting(overlay: str) -> None:
    fields = {f"VOICEBATCH_{name.upper()}" for name in Settings.model_fields}
    docs = build(overlay)
    used = {key for d in docs if d["kind"] == "ConfigMap" for key in d["data"]}
    for spec in pod_specs(docs).values():
        used |= {e["name"] for c in spec["containers"] for e in c.get("env", [])}
    voicebatch = {name for name in used if name.startswith("VOICEBATCH_")}
    assert voicebatch and voicebatch <= fields, voicebatch - fields


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_outlast_their_drain_and_start_it_before_the_kill(overlay: str) -> None:
    docs = build(overlay)
    for name in WORKERS:
        spec = find(docs, "Deployment", name)["spec"]["template"]["spec"]
        (worker,) = spec["containers"]
        grace = int(env_of(docs, worker)["VOICEBATCH_WORKER_GRACE_SECONDS"])
        # The drain, the lease release 3 s before its end, Celery's requeue and the exit.
        assert spec["terminationGracePeriodSeconds"] >= grace + 10, (overlay, name)
        assert "kill -TERM 1" in " ".join(worker["lifecycle"]["preStop"]["exec"]["command"])
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert worker[probe], (name, probe)
        # The probes use the metrics port, which opens only once the worker is ready.
        assert worker["startupProbe"]["tcpSocket"]["port"] == "metrics"
        port = int(worker["args"][worker["args"].index("--metrics-port") + 1])
        assert {"name": "metrics", "containerPort": port} in worker["ports"]


def test_render_workers_take_a_gpu_and_land_on_spot_nodes() -> None:
    for overlay in OVERLAYS:
        spec = find(build(overlay), "Deployment", "worker-render")["spec"]["template"]["spec"]
        (worker,) = spec["containers"]
        assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert worker["resources"]["requests"]["nvidia.com/gpu"] == 1
    pod = find(build("overlays/gpu-spot"), "Deployment", "worker-render")["spec"]["template"]
    affinity = pod["spec"]["affinity"]["nodeAffinity"]
    terms = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    labels = {(e["key"], tuple(e["values"])) for t in terms for e in t["matchExpressions"]}
    assert ("cloud.google.com/gke-spot", ("true",)) in labels
    assert ("eks.amazonaws.com/capacityType", ("SPOT",)) in labels
    tolerated = {t["key"] for t in pod["spec"]["tolerations"]}
    assert {"nvidia.com/gpu", "cloud.google.com/gke-spot"} <= tolerated
    # Assembly stays off the GPU pool.
    assemble = find(build("overlays/gpu-spot"), "Deployment", "worker-assemble")
    assert "affinity" not in assemble["spec"]["template"]["spec"]


def test_the_reconciler_and_exporter_are_one_and_the_migration_runs_first() -> None:
    docs = build("base")
    reconciler = find(docs, "Deployment", "reconciler")
    assert reconciler["spec"]["replicas"] == 1
    assert reconciler["spec"]["strategy"]["type"] == "Recreate"
    migrate = find(docs, "Job", "migrate")
    assert migrate["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]
    assert migrate["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    assert find(docs, "Deployment", "exporter")["spec"]["replicas"] == 1
    for name in ("api", *WORKERS):  # KEDA or the HPA own these counts; apply must not reset them
        assert "replicas" not in find(docs, "Deployment", name)["spec"], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_scales_each_worker_on_its_own_queue_with_a_cap(overlay: str) -> None:
    docs = build(overlay)
    render = find(docs, "Deployment", "worker-render")["spec"]["template"]["spec"]
    engine = env_of(docs, render["containers"][0])["VOICEBATCH_ENGINE"]
    queues = {"worker-render": dispatch.render_queue(engine), "worker-assemble": "assemble"}
    base = {name: load_policy(SCALED_OBJECTS, name) for name in WORKERS}
    for name, queue in queues.items():
        scaled = find(docs, "ScaledObject", name)
        assert scaled["spec"]["scaleTargetRef"]["name"] == name
        (trigger,) = scaled["spec"]["triggers"]
        meta = trigger["metadata"]
        expected_type = "rabbitmq" if overlay.endswith("rabbitmq") else "redis"
        assert trigger["type"] == expected_type
        assert meta.get("listName", meta.get("queueName")) == queue
        assert float(meta.get("listLength", meta.get("value"))) == base[name].target
        assert scaled["spec"]["maxReplicaCount"] >= 1
        find(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert find(docs, "ScaledObject", "worker-render")["spec"]["minReplicaCount"] == 0


def test_the_targets_per_replica_follow_from_the_workers_throughput() -> None:
    render = target_per_replica(GPU.x_realtime, RENDER_WAIT_S, MESSAGE_AUDIO_S)
    assemble = target_per_replica(ASSEMBLE_X, ASSEMBLE_WAIT_S, ITEM_AUDIO_S)
    assert load_policy(SCALED_OBJECTS, "worker-render").target == render
    assert load_policy(SCALED_OBJECTS, "worker-assemble").target == assemble


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_network_lets_workers_reach_only_the_database_broker_and_s3(overlay: str) -> None:
    docs = build(overlay)
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    deny = find(docs, "NetworkPolicy", "default-deny")["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"] and "egress" not in deny
    selected = deny["podSelector"]["matchLabels"]
    for d in docs:
        if d["kind"] in ("Deployment", "Job"):
            labels = d["spec"]["template"]["metadata"]["labels"]
            assert selected.items() <= labels.items(), f"{d['metadata']['name']} escapes the deny"
    ports = {
        (p["protocol"], p["port"])
        for policy in policies
        for rule in policy["spec"].get("egress", [])
        for p in rule["ports"]
    }
    assert ports == {
        *(("UDP", 53), ("TCP", 53)),
        *(("TCP", 5432), ("TCP", 6379), ("TCP", 5672), ("TCP", 5671)),
        *(("TCP", 443), ("TCP", 9000)),
        ("TCP", 80),  # webhooks-egress: the assemble workers' signed webhooks
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_pod_monitor_finds_a_metrics_port_on_every_long_running_pod(overlay: str) -> None:
    docs = build(overlay)
    monitor = find(docs, "PodMonitor", "voicebatch")["spec"]
    (endpoint,) = monitor["podMetricsEndpoints"]
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert monitor["selector"]["matchLabels"].items() <= labels.items()
        (container,) = d["spec"]["template"]["spec"]["containers"]
        names = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        assert endpoint["port"] in names, d["metadata"]["name"]
    # The API serves its metrics on the port the PodMonitor scrapes, apart from HTTP.
    (api,) = find(docs, "Deployment", "api")["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    assert int(env_of(docs, api)["VOICEBATCH_API_METRICS_PORT"]) == ports["metrics"]
    assert ports["metrics"] != ports["http"]
