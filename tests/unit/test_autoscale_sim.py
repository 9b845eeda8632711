"""The autoscaling simulation's core (bench/autoscale_model.py): a fleet drains a known
load in the time arithmetic says, KEDA and the HPA scale as their documented rules say,
spot reclaims lose no audio, and a ScaledObject it cannot follow is refused in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.autoscale_model import (
    Behavior,
    HpaModel,
    Job,
    PolicyError,
    ScalePolicy,
    Spot,
    WorkerProfile,
    load_policy,
    policy_from_scaled_object,
    simulate,
)

MESSAGE = 100.0  # seconds of audio per message in these tests
# A worker that renders one message in 10 s, ready at once.
WORKER = WorkerProfile("test", x_realtime=10.0, hourly_price=1.0, startup_s=0, source="test")


def test_a_fixed_fleet_drains_a_known_load_in_the_expected_time() -> None:
    # 12 messages, 3 workers, 10 s each: four rounds, done 40 s after submission.
    jobs = [Job(submitted_s=20.0, kind="book", audio_s=12 * MESSAGE)]
    result = simulate(jobs, WORKER, fixed=3, day_s=100, message_audio_s=MESSAGE)
    assert result.turnaround_s == [pytest.approx(40.0)]
    assert result.audio_s == pytest.approx(12 * MESSAGE)
    assert result.worker_hours == pytest.approx(3 * 100 / 3600)  # the whole day, three pods
    # The queue empties when the last round is picked up, 30 s in (seen at the next 5 s tick).
    assert 30.0 <= result.drain_s(20.0, 20.0) <= 35.0


def test_startup_delays_the_first_message_and_is_billed() -> None:
    slow = WorkerProfile("slow", x_realtime=10.0, hourly_price=1.0, startup_s=60, source="test")
    jobs = [Job(submitted_s=0.0, kind="book", audio_s=2 * MESSAGE)]
    result = simulate(jobs, slow, fixed=1, day_s=60, message_audio_s=MESSAGE)
    assert result.turnaround_s == [pytest.approx(80.0)]
    assert result.pod_seconds == pytest.approx(80.0)


POLICY = ScalePolicy(
    min_replicas=0,
    max_replicas=4,
    polling_s=15,
    cooldown_s=60,
    target=5,
    activation=0,
    up=Behavior(0, (("Pods", 4, 15),)),
    down=Behavior(30, (("Pods", 4, 15),)),
)


def test_keda_scales_from_zero_to_the_cap_and_back_to_zero() -> None:
    # 200 messages of 10 s: the cap of 4 takes 500 s; then the fleet idles for the
    # cooldown and goes back to zero. A fixed fleet of 4 pays for the whole day.
    jobs = [Job(submitted_s=1000.0, kind="book", audio_s=200 * MESSAGE)]
    keda = simulate(jobs, WORKER, policy=POLICY, day_s=3600, message_audio_s=MESSAGE)
    fixed = simulate(jobs, WORKER, fixed=4, day_s=3600, message_audio_s=MESSAGE)
    assert keda.max_pods == 4
    assert fixed.turnaround_s[0] == pytest.approx(500.0)
    # One worker for the first 15 s (KEDA activates, the HPA acts at its next sync).
    assert 500 < keda.turnaround_s[0] <= 520
    assert keda.worker_hours < fixed.worker_hours / 3
    assert keda.audio_s == pytest.approx(200 * MESSAGE)


def test_nothing_queued_means_no_pods_and_no_cost() -> None:
    result = simulate([], WORKER, policy=POLICY, day_s=600, message_audio_s=MESSAGE)
    assert result.pod_seconds == 0 and result.max_pods == 0


def test_the_hpa_follows_its_stabilization_window_and_rate_policy() -> None:
    policy = ScalePolicy(
        min_replicas=1,
        max_replicas=10,
        polling_s=15,
        cooldown_s=300,
        target=10,
        activation=0,
        up=Behavior(0, (("Pods", 2, 60),)),
        down=Behavior(60, (("Pods", 1, 60),)),
    )
    hpa = HpaModel(policy)
    # 100 waiting want 10 replicas; at most 2 more a minute.
    assert hpa.desired(0, 1, 100) == 3
    assert hpa.desired(15, 3, 100) == 3
    assert hpa.desired(60, 3, 100) == 5
    # The backlog is gone: the 60 s window still holds the last "10", so no scale-down yet.
    assert hpa.desired(75, 5, 0) == 5
    assert hpa.desired(135, 5, 0) == 4  # then one a minute
    assert hpa.desired(150, 4, 0) == 4
    # Within the tolerance (10%) nothing changes: 4 replicas, 42 waiting.
    assert hpa.desired(300, 4, 42) == 4


def test_spot_reclaims_hand_work_back_and_lose_no_audio() -> None:
    jobs = [Job(submitted_s=float(i * 50), kind="book", audio_s=30 * MESSAGE) for i in range(5)]
    spot = Spot(hazard_per_hour=20.0, storm_s=200.0, storm_share=1.0)
    # A replacement pod needs 30 s before it renders: that is what a reclaim costs.
    worker = WorkerProfile("w", x_realtime=10.0, hourly_price=1.0, startup_s=30, source="test")
    result = simulate(jobs, worker, fixed=3, spot=spot, day_s=100, message_audio_s=MESSAGE)
    calm = simulate(jobs, worker, fixed=3, day_s=100, message_audio_s=MESSAGE)
    assert result.interruptions >= 3
    assert result.audio_s == pytest.approx(5 * 30 * MESSAGE)
    assert max(result.turnaround_s) > max(calm.turnaround_s)
    # Seeded: the same run again gives the same numbers.
    again = simulate(jobs, worker, fixed=3, spot=spot, day_s=100, message_audio_s=MESSAGE)
    assert again.turnaround_s == result.turnaround_s
    assert again.interruptions == result.interruptions


def test_a_scaled_object_the_simulation_cannot_follow_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    doc = {
        "kind": "ScaledObject",
        "metadata": {"name": "worker-render"},
        "spec": {"triggers": [{"type": "redis", "metadata": {"listLength": "lots"}}]},
    }
    with pytest.raises(PolicyError, match=r"^worker-render target per replica is 'lots', not a"):
        policy_from_scaled_object(doc)
    doc["spec"] = {"triggers": [{"type": "cpu", "metadata": {"value": "50"}}]}
    with pytest.raises(PolicyError, match="a redis or rabbitmq QueueLength trigger expected"):
        policy_from_scaled_object(doc)
    with pytest.raises(PolicyError, match="has no ScaledObject named worker-render"):
        (tmp_path / "empty.yaml").write_text("kind: ConfigMap\n")
        load_policy(tmp_path / "empty.yaml", "worker-render")


def test_a_fleet_too_small_for_its_load_is_reported_not_looped() -> None:
    jobs = [Job(submitted_s=0.0, kind="book", audio_s=1e9)]
    with pytest.raises(RuntimeError, match="never drained"):
        simulate(jobs, WORKER, fixed=1, day_s=100, message_audio_s=1e8, dt=3600)


def _sim(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(__file__).resolve().parents[2] / "bench" / "sim_autoscale.py"
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=120
    )


def test_the_command_refuses_a_price_that_is_not_a_positive_number_in_one_line() -> None:
    for price in ("-1", "0", "cheap"):
        out = _sim("--gpu-price", price)
        assert out.returncode == 2 and out.stdout == ""
        (line,) = out.stderr.strip().splitlines()[-1:]
        assert "--gpu-price" in line, out.stderr


def test_the_command_prints_the_targets_the_scaled_objects_carry() -> None:
    out = _sim("--targets")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "render: 278 messages per replica; assemble: 169"
