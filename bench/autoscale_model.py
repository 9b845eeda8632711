"""The core of the autoscaling simulation (bench/sim_autoscale.py): KEDA's scaling policy
read from a ScaledObject, the HorizontalPodAutoscaler's algorithm it drives, and a fleet
of render workers draining one FIFO queue, with spot interruptions. Deterministic: the
same jobs and seed give the same result.

What is modelled, and how:

- a queue of render messages (16 chunks of ~10 s each), FIFO, as Celery's; KEDA sees the
  messages waiting, not those a worker holds (a Redis list or a queue's ready count);
- KEDA every `pollingInterval`: active while more than the activation value wait; from
  zero to one replica when active, back to zero `cooldownPeriod` after the last active
  poll (only when minReplicaCount is 0);
- the HPA every 15 s above zero: `ceil(waiting / target)` (an AverageValue target) with
  its 10% tolerance, the stabilization windows, the scale-up and scale-down policies
  (selectPolicy Max), clamped to [max(1, min), max];
- a worker renders `x_realtime` seconds of audio per second once ready, `startup_s`
  after its pod is created (node, image, engine); a pod is billed from creation;
- a pod removed by a scale-down, or reclaimed by a spot interruption, hands its message's
  unfinished audio back to the head of the queue (the drain); a reclaimed pod is
  replaced by its Deployment, starting again from creation.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

HPA_SYNC_S = 15  # kube-controller-manager's --horizontal-pod-autoscaler-sync-period
HPA_TOLERANCE = 0.1  # ... and its --horizontal-pod-autoscaler-tolerance
# One render message: VOICEBATCH_TASK_CHUNKS (16) chunks of 10.1 s of audio each (the
# 45-chapter book of docs/benchmarks.md: 2,322 s of audio in 230 chunks).
CHUNK_AUDIO_S = 2322 / 230
MESSAGE_AUDIO_S = 16 * CHUNK_AUDIO_S


class PolicyError(ValueError):
    """A ScaledObject this simulation cannot follow; the message names what is wrong."""


@dataclass(frozen=True)
class Behavior:
    """One direction of an HPA's `behavior`: stabilization window and rate policies."""

    window_s: int
    policies: tuple[tuple[str, int, int], ...]  # (Pods | Percent, value, periodSeconds)
    select: str = "Max"


# The HPA's defaults (autoscaling/v2) where a ScaledObject gives no behavior.
DEFAULT_UP = Behavior(0, (("Percent", 100, 15), ("Pods", 4, 15)))
DEFAULT_DOWN = Behavior(300, (("Percent", 100, 15),))


@dataclass(frozen=True)
class ScalePolicy:
    """What a ScaledObject tells KEDA and its HPA."""

    min_replicas: int
    max_replicas: int
    polling_s: int
    cooldown_s: int
    target: float  # waiting messages per replica
    activation: float
    up: Behavior = DEFAULT_UP
    down: Behavior = DEFAULT_DOWN


def _number(value: Any, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise PolicyError(f"{what} is {value!r}, not a number") from None


def _behavior(raw: dict[str, Any] | None, default: Behavior, what: str) -> Behavior:
    if not raw:
        return default
    policies = tuple(
        (str(p["type"]), int(_number(p["value"], what)), int(_number(p["periodSeconds"], what)))
        for p in raw.get("policies") or ()
    )
    window = raw.get("stabilizationWindowSeconds", default.window_s)
    return Behavior(
        int(_number(window, f"{what}.stabilizationWindowSeconds")),
        policies or default.policies,
        str(raw.get("selectPolicy", "Max")),
    )


def policy_from_scaled_object(doc: dict[str, Any]) -> ScalePolicy:
    """The policy of a ScaledObject with one queue-length trigger (Redis list length or
    RabbitMQ QueueLength), KEDA's defaults where a field is left out."""
    name = (doc.get("metadata") or {}).get("name", "?")
    spec = doc.get("spec") or {}
    triggers = spec.get("triggers") or []
    if len(triggers) != 1:
        raise PolicyError(f"ScaledObject {name}: one queue-length trigger expected")
    meta = triggers[0].get("metadata") or {}
    if triggers[0].get("type") == "redis":
        target, activation = meta.get("listLength", "5"), meta.get("activationListLength", "0")
    elif triggers[0].get("type") == "rabbitmq" and meta.get("mode") == "QueueLength":
        target, activation = meta.get("value"), meta.get("activationValue", "0")
    else:
        raise PolicyError(f"ScaledObject {name}: a redis or rabbitmq QueueLength trigger expected")
    behavior = ((spec.get("advanced") or {}).get("horizontalPodAutoscalerConfig") or {}).get(
        "behavior"
    ) or {}
    policy = ScalePolicy(
        min_replicas=int(_number(spec.get("minReplicaCount", 0), f"{name} minReplicaCount")),
        max_replicas=int(_number(spec.get("maxReplicaCount", 100), f"{name} maxReplicaCount")),
        polling_s=int(_number(spec.get("pollingInterval", 30), f"{name} pollingInterval")),
        cooldown_s=int(_number(spec.get("cooldownPeriod", 300), f"{name} cooldownPeriod")),
        target=_number(target, f"{name} target per replica"),
        activation=_number(activation, f"{name} activation value"),
        up=_behavior(behavior.get("scaleUp"), DEFAULT_UP, f"{name} scaleUp"),
        down=_behavior(behavior.get("scaleDown"), DEFAULT_DOWN, f"{name} scaleDown"),
    )
    if policy.target <= 0 or not 0 <= policy.min_replicas <= policy.max_replicas:
        raise PolicyError(f"ScaledObject {name}: needs target > 0 and 0 <= min <= max")
    return policy


def load_policy(path: Path, name: str) -> ScalePolicy:
    """The policy of ScaledObject `name` in the YAML file at `path`."""
    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"cannot read {path}: {' '.join(str(exc).split())}") from exc
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") != "ScaledObject":
            continue
        if (doc.get("metadata") or {}).get("name") == name:
            return policy_from_scaled_object(doc)
    raise PolicyError(f"{path} has no ScaledObject named {name}")


def target_per_replica(x_realtime: float, wait_s: float, message_audio_s: float) -> int:
    """Waiting messages one replica is sized for: those a worker rendering `x_realtime`
    seconds of audio a second clears in `wait_s`."""
    return max(1, math.floor(x_realtime * wait_s / message_audio_s))


@dataclass(frozen=True)
class WorkerProfile:
    name: str
    x_realtime: float  # seconds of audio rendered per second, one worker
    hourly_price: float  # one worker's node, an hour
    startup_s: float  # pod created -> consuming (node, image pull, engine load)
    source: str


@dataclass(frozen=True)
class Job:
    submitted_s: float
    kind: str
    audio_s: float


@dataclass(frozen=True)
class Spot:
    """Spot interruptions: each pod is reclaimed after an exponential lifetime (mean
    1 / hazard hours), and in a storm at `storm_s` each running pod with `storm_share`."""

    hazard_per_hour: float = 0.05
    storm_s: float | None = None
    storm_share: float = 0.5


@dataclass
class _Pod:
    serial: int
    created_s: float
    ready_s: float
    reclaim_s: float
    job: int = -1
    left_s: float = 0.0  # audio left of the message it holds


@dataclass
class Result:
    turnaround_s: list[float]
    pod_seconds: float
    audio_s: float
    finished_s: float  # the last job done
    interruptions: int
    max_pods: int
    waiting: list[tuple[float, int]] = field(repr=False, default_factory=list)

    @property
    def worker_hours(self) -> float:
        return self.pod_seconds / 3600

    def p95_turnaround_s(self) -> float:
        ordered = sorted(self.turnaround_s)
        return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]

    def drain_s(self, since_s: float, last_arrival_s: float) -> float:
        """From `since_s` until nothing waits any more after `last_arrival_s` (a burst's
        first and last submissions): the backlog's drain time."""
        empty = next((t for t, n in self.waiting if t > last_arrival_s and n == 0), math.inf)
        return empty - since_s


class HpaModel:
    """The HPA's replica calculation over one external AverageValue metric."""

    def __init__(self, policy: ScalePolicy) -> None:
        self.policy = policy
        self.recs: deque[tuple[float, int]] = deque()
        self.events: deque[tuple[float, int]] = deque()

    def desired(self, now: float, current: int, metric: float) -> int:
        p = self.policy
        floor = max(1, p.min_replicas)
        ratio = metric / (p.target * current)
        rec = current if abs(ratio - 1) <= HPA_TOLERANCE else math.ceil(metric / p.target)
        rec = min(max(rec, floor), p.max_replicas)
        self.recs.append((now, rec))
        keep = max(p.up.window_s, p.down.window_s, 1)
        while self.recs and self.recs[0][0] <= now - keep:
            self.recs.popleft()
        up = min([r for t, r in self.recs if t > now - p.up.window_s] or [rec])
        down = max([r for t, r in self.recs if t > now - p.down.window_s] or [rec])
        wanted = min(max(current, up), down)
        if wanted > current:
            wanted = min(wanted, self._limit(now, current, p.up, up=True))
        elif wanted < current:
            wanted = max(wanted, self._limit(now, current, p.down, up=False))
        wanted = min(max(wanted, floor), p.max_replicas)
        if wanted != current:
            self.events.append((now, wanted - current))
        return wanted

    def _limit(self, now: float, current: int, behavior: Behavior, *, up: bool) -> int:
        limits = []
        for kind, value, period in behavior.policies:
            changed = sum(d for t, d in self.events if t > now - period and (d > 0) == up)
            start = current - changed  # replicas at the start of the period
            if kind == "Pods":
                limits.append(start + value if up else start - value)
            elif up:
                limits.append(math.ceil(start * (1 + value / 100)))
            else:
                limits.append(math.ceil(start * (1 - value / 100)))
        pick = max if (behavior.select == "Max") == up else min
        return pick(limits)


def simulate(
    jobs: Sequence[Job],
    profile: WorkerProfile,
    *,
    policy: ScalePolicy | None = None,
    fixed: int | None = None,
    spot: Spot | None = None,
    seed: int = 1,
    day_s: float = 86400.0,
    dt: float = 5.0,
    message_audio_s: float = MESSAGE_AUDIO_S,
) -> Result:
    """Replay `jobs` on a fleet scaled by `policy`, or of `fixed` workers, until the day
    is over and every job is done (and an autoscaled fleet is back at its minimum)."""
    if (policy is None) == (fixed is None):
        raise ValueError("give a scaling policy or a fixed fleet size, not both")
    spot = spot or Spot(hazard_per_hour=0.0)
    order = sorted(range(len(jobs)), key=lambda i: jobs[i].submitted_s)
    left = [max(1, math.ceil(job.audio_s / message_audio_s)) for job in jobs]
    done: dict[int, float] = {}
    queue: deque[list[float]] = deque()  # [job index, audio seconds]
    pods: list[_Pod] = []
    serial = 0

    def new_pod(now: float) -> _Pod:
        nonlocal serial
        serial += 1
        rng = random.Random(f"{seed}:{serial}")
        life = rng.expovariate(spot.hazard_per_hour / 3600) if spot.hazard_per_hour else math.inf
        return _Pod(serial, now, now + profile.startup_s, now + life)

    def hand_back(pod: _Pod) -> None:
        if pod.job >= 0 and pod.left_s > 0:
            queue.appendleft([pod.job, pod.left_s])

    replicas = fixed if fixed is not None else (policy.min_replicas if policy else 0)
    hpa = HpaModel(policy) if policy else None
    last_active = -math.inf
    result = Result([], 0.0, 0.0, 0.0, 0, 0)
    next_job, now = 0, 0.0
    storm_done = spot.storm_s is None
    while True:
        while next_job < len(order) and jobs[order[next_job]].submitted_s <= now:
            index = order[next_job]
            for m in range(left[index]):
                rest = jobs[index].audio_s - m * message_audio_s
                queue.append([index, min(message_audio_s, rest)])
            next_job += 1
        # Spot reclaims: the pod drains (hands its message back) and is replaced.
        reclaimed = [p for p in pods if p.reclaim_s <= now]
        if not storm_done and spot.storm_s is not None and now >= spot.storm_s:
            storm_done = True
            rng = random.Random(f"{seed}:storm")
            reclaimed += [p for p in pods if p not in reclaimed and rng.random() < spot.storm_share]
        for pod in reclaimed:
            hand_back(pod)
            pods.remove(pod)
            result.interruptions += 1
        # Scaling decisions, on the controllers' own clocks.
        if policy is not None and hpa is not None:
            waiting = len(queue)
            if now % policy.polling_s == 0:
                if waiting > policy.activation:
                    last_active = now
                    replicas = max(replicas, 1)
                elif policy.min_replicas == 0 and now - last_active >= policy.cooldown_s:
                    replicas = 0
            if replicas > 0 and now % HPA_SYNC_S == 0:
                replicas = hpa.desired(now, replicas, waiting)
        while len(pods) < replicas:
            pods.append(new_pod(now))
        while len(pods) > replicas:  # the newest pods go first, as a ReplicaSet picks
            hand_back(pods.pop())
        result.max_pods = max(result.max_pods, len(pods))
        # Work: each ready pod renders x_realtime * dt seconds of audio this tick.
        for pod in pods:
            budget = profile.x_realtime * max(0.0, min(dt, now + dt - pod.ready_s))
            while budget > 0:
                if pod.job < 0:
                    if not queue:
                        break
                    pod.job, pod.left_s = int(queue[0][0]), queue.popleft()[1]
                step = min(budget, pod.left_s)
                budget -= step
                pod.left_s -= step
                result.audio_s += step
                if pod.left_s <= 1e-9:
                    left[pod.job] -= 1
                    if left[pod.job] == 0:
                        done[pod.job] = now + dt - budget / profile.x_realtime
                    pod.job = -1
        result.pod_seconds += len(pods) * dt
        now += dt
        result.waiting.append((now, len(queue)))
        all_done = len(done) == len(jobs)
        settled = policy is None or replicas <= policy.min_replicas
        if now >= day_s and all_done and settled:
            break
        if now > 7 * day_s:
            raise RuntimeError("the fleet never drained the load: too few workers")
    result.turnaround_s = [done[i] - jobs[i].submitted_s for i in range(len(jobs))]
    result.finished_s = max(done.values(), default=0.0)
    return result
