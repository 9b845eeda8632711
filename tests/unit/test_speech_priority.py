"""Speech beside batch work on a CPU engine of one request per call (Piper): speech
renders in the worker's process at normal priority, batch rendering in lowered processes
of its own (pipeline.engines.priority, pipeline.engines.piper_processes, workers.context)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from pipeline.batching import BatchingEngine
from pipeline.config import load_settings
from pipeline.engines import piper_processes
from pipeline.engines.base import SynthesisRequest, SynthesisResult
from pipeline.engines.piper import PiperEngine, cpu_slots
from pipeline.engines.piper_processes import PiperProcesses, SpeechFirstPiper
from pipeline.engines.priority import lower_process, thread_niceness
from pipeline.errors import InputError, RetryableError
from pipeline.storage.local import LocalObjectStore
from workers.context import WorkerResources

SENTENCE = "Your order has shipped and will arrive on Thursday afternoon."
# a batch chunk of twenty sentences: several seconds of engine time on these cores
CHUNK = " ".join(f"Sentence number {n} of the chapter goes on a little longer." for n in range(20))


def _request(engine: PiperEngine, text: str) -> SynthesisRequest:
    return SynthesisRequest(
        text=text, voice=engine.default_voice, params={"speaking_rate": 1.0, "sentence_pause_ms": 0}
    )


def _thread_nices() -> dict[int, int]:
    nices = {}
    for task in Path("/proc/self/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        nices[int(task.name)] = int(fields[16])  # stat field 19, nice
    return nices


def _resources(tmp_path: Path, **settings: object) -> WorkerResources:
    return WorkerResources(
        settings=load_settings(engine="piper", data_dir=tmp_path, **settings),
        factory=None,  # type: ignore[arg-type]  # the engine needs no database
        chunk_store=LocalObjectStore(tmp_path / "chunks"),
        index=None,
    )


def _nice_of(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _states(pids: Sequence[int], settled: str | set[str]) -> set[str]:
    """The processes' states once each is in `settled` (a signal lands a moment after
    it is sent), or as they are after two seconds."""
    want = {settled} if isinstance(settled, str) else settled
    deadline = time.monotonic() + 2
    while True:
        states = {_state(pid) for pid in pids}
        if states <= want or time.monotonic() > deadline:
            return states
        time.sleep(0.01)


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":  # exited, not yet reaped by its parent
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def lowered() -> Iterator[tuple[SpeechFirstPiper, PiperProcesses]]:
    processes, speech = PiperEngine().split(12)
    yield speech, processes
    processes.close()


def test_a_session_renders_on_its_callers_thread_alone() -> None:
    loaded = PiperEngine(call_threads=1)
    loaded.render_batch([_request(loaded, "Piper and espeak are loaded.")])
    before = set(_thread_nices())
    engine = PiperEngine(call_threads=1)
    engine.render_batch([_request(engine, "One short line.")])
    # onnxruntime's default starts a pool of threads for each session: a one-thread
    # session runs each call on the thread that makes it, at that thread's priority
    assert set(_thread_nices()) - before == set()
    pooled = PiperEngine(call_threads=2)  # a pool of its own: one thread besides the caller
    assert len(set(_thread_nices()) - before) == 1
    del pooled


def test_batch_renders_in_lowered_processes_and_speech_here(
    lowered: tuple[SpeechFirstPiper, PiperProcesses],
) -> None:
    engine, processes = lowered
    pids = processes.pids()
    assert len(pids) == cpu_slots() and os.getpid() not in pids
    # speech: one sentence at a time, on every core (the batch processes are stopped)
    assert engine.engine.call_threads == cpu_slots()
    assert {_nice_of(pid) for pid in pids} == {12}
    assert thread_niceness() == 0  # this process is not lowered
    request = _request(engine, SENTENCE)
    [batch] = processes.render_batch([request])
    [here] = engine.render_batch([request])
    assert batch.sample_rate == here.sample_rate == engine.sample_rate
    assert batch.duration == pytest.approx(here.duration, rel=0.15) and batch.duration > 2.0
    assert processes.model_version == engine.model_version


def test_a_request_that_fails_in_a_child_fails_alone(
    lowered: tuple[SpeechFirstPiper, PiperProcesses],
) -> None:
    engine, processes = lowered
    bad = SynthesisRequest(text="Hello.", voice="/no/such/voice.onnx", params={})
    with pytest.raises(InputError, match="unknown piper voice"):
        processes.render_batch([bad])
    [result] = processes.render_batch([_request(engine, "Still here.")])
    assert result.duration > 0.3


def test_a_killed_render_process_is_retried_and_replaced(
    lowered: tuple[SpeechFirstPiper, PiperProcesses],
) -> None:
    engine, processes = lowered
    old = processes.pids()
    holding = threading.Event()

    def kill_one_while_rendering() -> None:
        holding.wait()
        threading.Event().wait(0.2)
        os.kill(old[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_one_while_rendering)
    killer.start()
    holding.set()
    with pytest.raises(RetryableError, match="render process died"):
        processes.render_batch([_request(engine, CHUNK)] * len(old))
    killer.join()
    [result] = processes.render_batch([_request(engine, "A fresh start.")])
    assert result.duration > 0.5
    new = processes.pids()
    assert len(new) == len(old) and not set(new) & set(old)
    assert {_nice_of(pid) for pid in new} == {12}


class _Watched(PiperEngine):
    """The speech engine, noting the batch children's states while it renders."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__()
        self.pids = pids
        self.seen: list[set[str]] = []

    def render_batch(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisResult]:
        self.seen.append(_states(self.pids, "T"))
        return super().render_batch(requests)


def test_batch_processes_are_stopped_while_speech_renders(
    lowered: tuple[SpeechFirstPiper, PiperProcesses],
) -> None:
    speech, processes = lowered
    pids = processes.pids()
    watched = _Watched(pids)
    first = SpeechFirstPiper(watched, processes)
    batch_done: list[SynthesisResult] = []
    chunk = threading.Thread(
        target=lambda: batch_done.extend(processes.render_batch([_request(speech.engine, CHUNK)]))
    )
    chunk.start()
    threading.Event().wait(0.3)  # the chunk is rendering in a child
    [result] = first.render_batch([_request(speech.engine, SENTENCE)])
    assert watched.seen == [{"T"}]  # every child stopped while the sentence rendered
    # read now: the window forgets a stop PAUSE_WINDOW seconds on, and on a busy
    # machine the chunk below may take longer than that
    assert 0 < processes.stopped_share() < piper_processes.PAUSE_SHARE
    assert result.duration > 2.0
    assert _states(pids, {"R", "S"}) <= {"R", "S"}  # running again after it
    chunk.join(120)
    # stopped and continued, the chunk's render went on where it was: all of it is there
    assert len(batch_done) == 1 and batch_done[0].duration > 40


def test_batch_processes_are_not_stopped_past_their_share(
    lowered: tuple[SpeechFirstPiper, PiperProcesses], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a flood of speech, batch work still gets the rest of each window."""
    speech, processes = lowered
    monkeypatch.setattr(piper_processes, "PAUSE_SHARE", 0.0)
    watched = _Watched(processes.pids())
    SpeechFirstPiper(watched, processes).render_batch([_request(speech.engine, "Go on.")])
    assert watched.seen == [{"S"}]  # idle children, left running
    monkeypatch.setattr(piper_processes, "PAUSE_SHARE", 0.5)
    with processes.stopped() as held, processes.stopped() as nested:
        assert held and nested
        assert _states(processes.pids(), "T") == {"T"}
    assert _states(processes.pids(), "S") == {"S"}  # the last one out continues


def test_lowering_a_process_lowers_every_thread_it_has_and_starts() -> None:
    script = (
        "import threading\n"
        "from pipeline.engines.priority import lower_process, thread_niceness\n"
        "ids, go = [], threading.Event()\n"
        "def wait():\n"
        "    ids.append(threading.get_native_id()); go.wait()\n"
        "early = threading.Thread(target=wait); early.start()\n"
        "while not ids: pass\n"
        "lower_process(7)\n"
        "late = threading.Thread(target=lambda: ids.append(thread_niceness())); late.start()\n"
        "late.join()\n"
        "print(thread_niceness(), thread_niceness(ids[0]), ids[1])\n"
        "lower_process(3)\n"  # never raised back: that would need privilege
        "print(thread_niceness()); go.set()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout.split()
    assert out == ["7", "7", "7", "7"]
    lower_process(0)  # nothing to do, here in the test's own process
    assert thread_niceness() == 0


def test_render_processes_exit_with_their_parent_even_stopped(tmp_path: Path) -> None:
    script = (
        "import os, sys\n"
        "from pipeline.engines.piper import PiperEngine\n"
        "processes, _ = PiperEngine().split(10)\n"
        "held = processes.stopped(); held.__enter__()\n"
        "print(*processes.pids(), flush=True)\n"
        "sys.stdin.read()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert parent.stdout is not None
        children = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(children) == cpu_slots() and {_nice_of(pid) for pid in children} == {10}
        assert _states(children, "T") == {"T"}  # stopped, as for speech
        parent.kill()  # no clean-up runs, and stopped children watch nothing
        parent.wait(10)
        assert all(_gone(pid, within=15) for pid in children)
    finally:
        parent.kill()


def test_speech_is_not_held_behind_the_batch_chunk_in_the_engine(tmp_path: Path) -> None:
    """A sentence sent while a long batch chunk renders finishes first: on the old code
    the worker's one session was held for the whole chunk."""
    resources = _resources(tmp_path)
    resources.serves_speech = True
    batch = resources.engine
    speech = resources.speech_engine
    assert isinstance(batch, PiperProcesses) and batch.niceness == 15  # the default
    assert isinstance(speech, SpeechFirstPiper) and speech.batch is batch
    finished: list[str] = []
    started = threading.Event()

    def render_chunk() -> None:
        started.set()
        batch.render_batch([_request(speech, CHUNK)])
        finished.append("batch")

    chunk = threading.Thread(target=render_chunk)
    chunk.start()
    started.wait()
    # the chunk holds its session from here on (phonemizing takes milliseconds)
    threading.Event().wait(0.3)
    [result] = speech.render_batch([_request(speech, SENTENCE)])
    finished.append("speech")
    chunk.join()
    batch.close()
    assert finished == ["speech", "batch"]
    assert result.duration > 2.0  # the whole sentence was spoken


def test_without_speech_the_engine_is_plain_and_not_lowered(tmp_path: Path) -> None:
    resources = _resources(tmp_path)
    engine = resources.engine
    assert isinstance(engine, PiperEngine)
    assert resources.speech_engine is engine


def test_nice_zero_keeps_one_session_behind_a_batcher_of_one(tmp_path: Path) -> None:
    resources = _resources(tmp_path, speech_batch_nice=0)
    resources.serves_speech = True
    engine = resources.engine
    assert isinstance(engine, BatchingEngine) and engine.batcher.max_batch == 1
    assert resources.speech_engine is engine  # speech goes in its realtime lane


@pytest.mark.parametrize("value", [-1, 20])
def test_the_nice_setting_is_bounded(tmp_path: Path, value: int) -> None:
    with pytest.raises(InputError, match="VOICEBATCH_SPEECH_BATCH_NICE"):
        load_settings(engine="piper", data_dir=tmp_path, speech_batch_nice=value)
