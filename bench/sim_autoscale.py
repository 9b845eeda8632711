"""A day of mixed load on the render fleet: KEDA's policy as configured in
deploy/k8s/base/autoscaling-redis.yaml against fixed fleets, with spot interruptions.

    python bench/sim_autoscale.py [--seed 7] [--write docs/benchmarks.md]
    python bench/sim_autoscale.py --targets     # the targets per replica, from throughput

The day (seeded, so every run replays the same one), sized to the fleet's capacity at its
cap, so a slow worker meets the same shape of day as a fast one: bulk books (6-14 hours
of audio each) arriving through the working day, catalogues (20-400 items of 5-30 s)
around the clock, a burst at 14:00 (a publisher drops two hours of the capped fleet's
work within ten minutes), spot reclaims at 5% per pod-hour and a storm at 17:00 that
takes half the running pods. The simulation itself is bench/autoscale_model.py.

Per-worker throughput: Piper on 2 CPUs is measured (docs/benchmarks.md); Maya1 on an H100
is issue 4's target until `make bench-gpu` measures it. Prices are list-price examples
for spot capacity, to be replaced by yours (--gpu-price, --cpu-price).
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.autoscale_model import (  # noqa: E402
    MESSAGE_AUDIO_S,
    Behavior,
    Job,
    PolicyError,
    Result,
    ScalePolicy,
    Spot,
    WorkerProfile,
    load_policy,
    simulate,
    target_per_replica,
)

SCALED_OBJECTS = ROOT / "deploy" / "k8s" / "base" / "autoscaling-redis.yaml"
# The wait each target is sized for: a GPU worker takes about five minutes to come up
# (node, image, engine), so adding one for less backlog than that buys nothing.
RENDER_WAIT_S = 300
ASSEMBLE_WAIT_S = 60
# Assembly: 31.9 CPU-seconds for the 2,322 s (45 chapters, 51.6 s each) of the 45-chapter
# render in docs/benchmarks.md (encode, mastering, timing files): 145x on 2 CPUs.
ASSEMBLE_X = 2 * 2322 / 31.9
ITEM_AUDIO_S = 2322 / 45
BURST_AT_S = 14 * 3600

GPU = WorkerProfile(
    "Maya1, 1 H100 spot",
    x_realtime=150.0,
    hourly_price=2.50,
    startup_s=300,
    source="issue 4's target for batch 64 in bf16, not measured yet",
)
CPU = WorkerProfile(
    "Piper, 2 CPUs spot",
    x_realtime=2322 / 85.07,
    hourly_price=0.03,
    startup_s=90,
    source="measured: 2,322 s of audio in 85.07 s of engine time, docs/benchmarks.md, 2026-12-06",
)


def day_of_load(capacity: float, seed: int) -> list[Job]:
    """A day's jobs for a fleet that renders `capacity` seconds of audio a second at its
    cap: 20% of the day's capacity in bulk books, 5% in catalogues, and the burst."""
    rng = random.Random(seed)
    jobs: list[Job] = []
    budget = 0.20 * capacity * 86400
    while budget > 0:
        audio = rng.uniform(6, 14) * 3600
        jobs.append(Job(rng.uniform(8 * 3600, 20 * 3600), "book", audio))
        budget -= audio
    budget = 0.05 * capacity * 86400
    while budget > 0:
        audio = rng.randint(20, 400) * rng.uniform(5, 30)
        jobs.append(Job(rng.uniform(0, 86400), "catalogue", audio))
        budget -= audio
    budget = 2 * 3600 * capacity
    while budget > 0:
        audio = rng.uniform(6, 14) * 3600
        jobs.append(Job(BURST_AT_S + rng.uniform(0, 600), "burst", audio))
        budget -= audio
    return sorted(jobs, key=lambda job: job.submitted_s)


def scaled_for(policy: ScalePolicy, profile: WorkerProfile) -> ScalePolicy:
    """The configured policy, its target re-derived for this worker's throughput."""
    target = target_per_replica(profile.x_realtime, RENDER_WAIT_S, MESSAGE_AUDIO_S)
    return ScalePolicy(**{**policy.__dict__, "target": float(target)})


def row(label: str, result: Result, profile: WorkerProfile, jobs: list[Job]) -> str:
    burst = [job.submitted_s for job in jobs if job.kind == "burst"]
    drain = result.drain_s(BURST_AT_S, max(burst))
    hours = result.worker_hours
    audio_h = result.audio_s / 3600
    cost = hours * profile.hourly_price
    return (
        f"| {profile.name} | {label} | {drain / 60:.0f} min "
        f"| {result.p95_turnaround_s() / 60:.0f} min | {hours:.1f} | {result.max_pods} "
        f"| {result.interruptions} | {cost / audio_h:.4f} | {hours / audio_h * 100:.2f} |"
    )


def run(seed: int, gpu_price: float, cpu_price: float) -> tuple[list[str], ScalePolicy]:
    configured = load_policy(SCALED_OBJECTS, "worker-render")
    rows = []
    for base in (GPU, CPU):
        price = gpu_price if base is GPU else cpu_price
        profile = WorkerProfile(**{**base.__dict__, "hourly_price": price})
        policy = configured if base is GPU else scaled_for(configured, profile)
        jobs = day_of_load(policy.max_replicas * profile.x_realtime, seed)
        spot = Spot(hazard_per_hour=0.05, storm_s=17 * 3600, storm_share=0.5)
        keda = simulate(jobs, profile, policy=policy, spot=spot, seed=seed)
        label = f"KEDA: {policy.min_replicas}-{policy.max_replicas}, {policy.target:.0f}/replica"
        rows.append(row(label, keda, profile, jobs))
        for size in (policy.max_replicas, math.ceil(policy.max_replicas / 2)):
            fixed = simulate(jobs, profile, fixed=size, spot=spot, seed=seed)
            rows.append(row(f"fixed fleet of {size}", fixed, profile, jobs))
    return rows, configured


def rates(behavior: Behavior) -> str:
    def one(kind: str, value: int, period: int) -> str:
        unit = "%" if kind == "Percent" else (" pod" if value == 1 else " pods")
        return f"{value}{unit} per {period} s"

    return " or ".join(one(*policy) for policy in behavior.policies)


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def report(
    rows: list[str], policy: ScalePolicy, seed: int, command: str, prices: tuple[float, float]
) -> str:
    return "\n".join(
        [
            f"## Autoscaling a day of load, simulated — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            "",
            f"- Machine: {platform.machine()}, Python {platform.python_version()}, commit "
            f"{commit()} (a simulation: the machine only sets how long it takes to run)",
            f"- Command: `{command}`",
            f"- Policy: deploy/k8s/base/autoscaling-redis.yaml, worker-render as configured: "
            f"{policy.min_replicas}-{policy.max_replicas} replicas, "
            f"{policy.target:.0f} waiting messages per replica, polling {policy.polling_s} s, "
            f"cooldown {policy.cooldown_s} s, scale-up {rates(policy.up)}, scale-down "
            f"{rates(policy.down)} after a {policy.down.window_s} s window. For Piper the "
            "same policy with the target re-derived from its throughput.",
            f"- Load (seed {seed}): bulk books 08:00-20:00 (20% of the capped fleet's day), "
            "catalogues all day (5%), a burst of two capped-fleet hours at 14:00; spot "
            "reclaims at 5% per pod-hour and a storm at 17:00 taking half the pods.",
            f"- Throughput: Maya1 {GPU.x_realtime:.0f}x real time ({GPU.source}); Piper "
            f"{CPU.x_realtime:.1f}x ({CPU.source}).",
            f"- Prices (examples, in dollars; --gpu-price, --cpu-price): {prices[0]:.2f} an hour "
            f"for a spot H100 node, {prices[1]:.2f} for a 2-vCPU spot node.",
            "- Drain: from the burst until no message waits. Turnaround: submit to last "
            "chunk rendered. Worker-hours: pods from creation (node, image and engine "
            "start-up billed) to removal.",
            "",
            "| worker | fleet | burst drained in | p95 turnaround | worker-hours (GPU-hours "
            "for Maya1) | most pods | spot reclaims | cost per audio-hour ($) | worker-hours "
            "per 100 audio-hours |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--gpu-price", type=float, default=GPU.hourly_price)
    parser.add_argument("--cpu-price", type=float, default=CPU.hourly_price)
    parser.add_argument("--targets", action="store_true", help="print the targets per replica")
    parser.add_argument("--write", type=Path, help="append the table to this Markdown file")
    args = parser.parse_args()
    if args.targets:
        render = target_per_replica(GPU.x_realtime, RENDER_WAIT_S, MESSAGE_AUDIO_S)
        assemble = target_per_replica(ASSEMBLE_X, ASSEMBLE_WAIT_S, ITEM_AUDIO_S)
        print(f"render: {render} messages per replica; assemble: {assemble}")
        return 0
    if not (args.gpu_price > 0 and args.cpu_price > 0):
        print("error: --gpu-price and --cpu-price must be above 0", file=sys.stderr)
        return 2
    try:
        rows, policy = run(args.seed, args.gpu_price, args.cpu_price)
    except PolicyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    options = [f"--seed {args.seed}"] if args.seed != 7 else []
    if args.gpu_price != GPU.hourly_price or args.cpu_price != CPU.hourly_price:
        options.append(f"--gpu-price {args.gpu_price:g} --cpu-price {args.cpu_price:g}")
    command = " ".join(["python bench/sim_autoscale.py", *options])
    text = report(rows, policy, args.seed, command, (args.gpu_price, args.cpu_price))
    print(text)
    if args.write:
        before = args.write.read_text() if args.write.exists() else ""
        with args.write.open("a") as out:
            out.write(("\n" if before and not before.endswith("\n") else "") + "\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
