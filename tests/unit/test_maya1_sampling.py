"""The constrained per-request sampler, on hand-made logits."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from pipeline.engines.maya1.sampling import AudioSampler, RowSampling, stop_allowed  # noqa: E402
from pipeline.engines.maya1.tokens import EOS_SPEECH, slot_range  # noqa: E402

VOCAB = 156940


def _logits(rows: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, VOCAB, generator=torch.Generator().manual_seed(seed)) * 3


def _run(sampler: AudioSampler, logits: list[torch.Tensor]) -> list[list[int]]:
    out = [sampler.step(step_logits, step).tolist() for step, step_logits in enumerate(logits)]
    return [list(row) for row in zip(*out, strict=True)]


def test_only_the_positions_slot_and_the_stop_token_are_possible() -> None:
    steps = 42
    sampler = AudioSampler([RowSampling(seed=s, max_new_tokens=steps) for s in range(4)], "cpu")
    for step in range(steps):
        logits = _logits(4, step)
        logits[:, 1000] = 1e4  # a text token the model "wants" to say
        logits[:, slot_range((step + 1) % 7)[0]] = 1e4  # the next slot's token
        logits[:, EOS_SPEECH] = 50.0
        tokens = sampler.step(logits, step).tolist()
        low, high = slot_range(step % 7)
        for token in tokens:
            if stop_allowed(step):
                assert token == EOS_SPEECH  # the stop token wins where it may appear
            else:
                assert low <= token < high


def test_stop_only_at_frame_boundaries_after_28_tokens() -> None:
    assert [s for s in range(60) if stop_allowed(s)] == [28, 35, 42, 49, 56]


def test_a_rows_tokens_do_not_depend_on_its_batch_mates() -> None:
    steps = 21
    rows = [
        RowSampling(seed=11, max_new_tokens=steps, temperature=0.9, top_p=0.95),
        RowSampling(seed=22, max_new_tokens=steps),
        RowSampling(seed=33, max_new_tokens=steps, temperature=1.2, repetition_penalty=1.3),
    ]
    logits = [_logits(3, 100 + step) for step in range(steps)]
    together = _run(AudioSampler(rows, "cpu"), logits)
    for index, row in enumerate(rows):
        alone = _run(AudioSampler([row], "cpu"), [step[index : index + 1] for step in logits])
        assert alone[0] == together[index]
    assert together[0] != together[1]


def test_the_seed_decides_the_draws() -> None:
    logits = [_logits(1, step) for step in range(14)]
    first = _run(
        AudioSampler([RowSampling(seed=5, max_new_tokens=14, temperature=1.0)], "cpu"), logits
    )
    again = _run(
        AudioSampler([RowSampling(seed=5, max_new_tokens=14, temperature=1.0)], "cpu"), logits
    )
    other = _run(
        AudioSampler([RowSampling(seed=6, max_new_tokens=14, temperature=1.0)], "cpu"), logits
    )
    assert first == again and first != other


def test_small_top_p_or_zero_temperature_pick_the_best_token() -> None:
    logits = _logits(2, 3)
    low, high = slot_range(0)
    best = low + int(logits[0, low:high].argmax())
    best_second = low + int(logits[1, low:high].argmax())
    rows = [
        RowSampling(seed=1, max_new_tokens=1, top_p=1e-6, temperature=1.0),
        RowSampling(seed=2, max_new_tokens=1, temperature=0.0),
    ]
    assert AudioSampler(rows, "cpu").step(logits, 0).tolist() == [best, best_second]


def test_repetition_penalty_pushes_a_repeated_code_down() -> None:
    logits = torch.zeros(1, VOCAB)
    low, _ = slot_range(0)
    logits[0, low + 7] = 5.0
    logits[0, low + 9] = 4.8
    rows = [RowSampling(seed=0, max_new_tokens=8, temperature=0.0, repetition_penalty=1.1)]
    sampler = AudioSampler(rows, "cpu")
    assert sampler.step(logits, 0).tolist() == [low + 7]
    for step in range(1, 7):
        sampler.step(torch.zeros(1, VOCAB), step)
    # 5.0 / 1.1 = 4.55 < 4.8: the code already used in slot 0 loses to the runner-up
    assert sampler.step(logits, 7).tolist() == [low + 9]


def test_a_row_with_a_forced_length_never_stops_early_while_its_batch_mate_may() -> None:
    steps = 49
    rows = [
        RowSampling(seed=1, max_new_tokens=steps, min_new_tokens=steps),
        RowSampling(seed=2, max_new_tokens=steps),
    ]
    sampler = AudioSampler(rows, "cpu")
    logits = []
    for step in range(steps):
        step_logits = _logits(2, step)
        step_logits[:, EOS_SPEECH] = 1e4  # the model wants to stop at every chance
        logits.append(step_logits)
    forced, free = _run(sampler, logits)
    assert EOS_SPEECH not in forced
    assert free[28] == EOS_SPEECH  # the other row stops at its first chance
