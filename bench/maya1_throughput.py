"""Maya1 generation throughput: batched vs the naive path vs the memory-bandwidth roofline.

    PYTHONPATH=. python bench/maya1_throughput.py --shapes maya1 --device cuda \\
        [--budget-seconds 330] [--precisions bf16,fp16,int8] [--batches 1,16,64,256] \\
        [--compile] [--write docs/benchmarks.md]
    PYTHONPATH=. python bench/maya1_throughput.py --shapes tiny --device cpu

Runs on a bare GPU machine: it imports only torch, transformers, numpy, tokenizers and the
wheels in bench/gpu-wheels.txt (snac, einops), never pydantic, SQLAlchemy or PyAV, so a
plain checkout runs with PYTHONPATH=. (docs/benchmarks.md has the recipe;
tests/unit/test_bench_imports.py keeps it that way).

Random weights at the real Maya1 shapes (Llama-3.2-3B: 28 layers, hidden 3072, FFN 8192,
24/8 heads, vocabulary 156,940, tied embeddings), or a tiny model of the same layout on the
CPU, plus SNAC 24 kHz with random weights. Every request generates the same number of
tokens (the stop token is masked until then), so every row of a table does the same work.

In one run, planned to fit `--budget-seconds` (warm-up and model building included: each
measurement's length is cut to its share of the time left, and the table says how many
tokens each row generated):

1. per precision, the KV-parity check first, at the real shapes (`parity`): cached batched
   decoding against one full forward; nothing is timed when it fails (exit 1);
2. SNAC fp16 and bf16 against fp32 (SNR in dB, `snac.precision`);
3. per precision and batch, our decode path (the engine's HF backend, SNAC decode after):
   tokens/s, x real time (82 tokens = 1 s of audio, SNAC included), % of the roofline,
   SNAC's share of the time, peak device memory. Warm-up (and with --compile, compilation)
   runs before the clock starts;
4. the naive path: one default `model.generate` per chunk, then SNAC for it;
5. the dynamic batcher end to end: chunks from many threads through `DynamicBatcher` in
   front of the engine's two stages; the stage times against the wall time (their overlap).

The roofline counts the bytes a decode step reads: every transformer weight once, the 4,097
LM-head rows the backend multiplies (the slot's 4,096 audio tokens and the stop token; the
whole head where it cannot slice it, as for a quantised head), one embedding row per
request, and each request's KV cache, at the copy bandwidth measured in the same run.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # as if PYTHONPATH=.

import torch

from pipeline.batching.batcher import DynamicBatcher
from pipeline.engines.base import SynthesisRequest, SynthesisResult
from pipeline.engines.maya1.backends.hf import HFBackend
from pipeline.engines.maya1.engine import Maya1Engine
from pipeline.engines.maya1.loading import quantize_int8, weight_dtype
from pipeline.engines.maya1.parity import SELF_CHECK_TOLERANCE, kv_parity_max_diff
from pipeline.engines.maya1.sampling import RowSampling
from pipeline.engines.maya1.snac.precision import precision_snr
from pipeline.engines.maya1.snac.torch import TorchSnacDecoder
from pipeline.engines.maya1.tokens import (
    AUDIO_BASE,
    CODEBOOK,
    EOS_SPEECH,
    PROMPT_PREFIX,
    PROMPT_SUFFIX,
    SLOTS,
    TOKENS_PER_SECOND,
)
from pipeline.engines.maya1.unpack import unpack
from tests.support.maya1_fixtures import build_tokenizer
from tests.support.snac_fixtures import build_tiny_snac

VOCAB = 156_940
PAD_ID = 128263
SHAPES: dict[str, dict[str, Any]] = {
    # Llama-3.2-3B, as Maya1 uses it
    "maya1": dict(
        hidden_size=3072,
        intermediate_size=8192,
        num_hidden_layers=28,
        num_attention_heads=24,
        num_key_value_heads=8,
        head_dim=128,
    ),
    # the same layout, small enough for two CPU cores
    "tiny": dict(
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
    ),
}
PROMPT_WORDS = 40  # a typical chunk: description + one or two sentences, in tokens
HEAD_ROWS = CODEBOOK + 1  # the slot's audio tokens and the stop token
PARITY_STEPS = 64
MIN_TOKENS = 5 * SLOTS  # the shortest timed run: past the 28 tokens before a stop may come


@dataclass
class Row:
    precision: str
    path: str  # "naive", "ours" or "batcher"
    batch: int
    tokens: int  # generated per request
    tokens_per_s: float
    x_real_time: float
    snac_share: float
    peak_gb: float
    roofline_tokens_per_s: float
    note: str = ""


class Budget:
    """The run's deadline, shared out between the measurements still to come."""

    def __init__(self, seconds: float, slices: int) -> None:
        self.deadline = time.perf_counter() + seconds
        self.slices = slices

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def take(self) -> float:
        """Seconds for the next measurement: its share of what is left, 15% held back
        for building models, checks and warm-ups still to come."""
        share = max(self.left(), 0.0) * 0.85 / max(self.slices, 1)
        self.slices -= 1
        return share


def fitting_tokens(seconds: float, step_seconds: float, wanted: int) -> int:
    """Tokens per request that fit `seconds` at `step_seconds` a step: whole frames,
    at least MIN_TOKENS, at most `wanted`."""
    frames = int(seconds / max(step_seconds, 1e-9)) // SLOTS
    return max(MIN_TOKENS, min(wanted, frames * SLOTS))


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def copy_bandwidth(device: str) -> float:
    """Bytes per second moved by a device-to-device copy (read + write counted)."""
    size = (1 << 30) if device.startswith("cuda") else (1 << 27)
    src = torch.empty(size, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    sync(device)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(4):
            dst.copy_(src)
        sync(device)
        best = min(best, (time.perf_counter() - start) / 4)
    return 2 * size / best


def build_model(shapes: str, precision: str, device: str) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB,
        tie_word_embeddings=True,
        max_position_embeddings=8192,
        bos_token_id=128000,
        eos_token_id=EOS_SPEECH,
        pad_token_id=PAD_ID,
        **SHAPES[shapes],
    )
    dtype = weight_dtype(precision, device)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.eval()
    if precision == "int8":
        quantize_int8(model)
    return model


def _nbytes(tensor: torch.Tensor) -> int:
    inner = getattr(tensor, "tensor_impl", None) or getattr(tensor, "layout_tensor", None)
    if inner is not None and hasattr(inner, "int_data"):  # torchao int8: data + scales
        return int(inner.int_data.numel() * inner.int_data.element_size())
    return int(tensor.numel() * tensor.element_size())


def step_bytes(backend: HFBackend, batch: int, context: float) -> float:
    """Bytes one decode step reads (module doc): transformer weights, the LM-head rows
    multiplied, `batch` embedding rows, and `batch` KV caches of `context` tokens."""
    model = backend.model
    head = model.lm_head.weight
    embedding = model.model.embed_tokens.weight
    hidden = model.config.hidden_size
    layers = sum(_nbytes(p) for n, p in model.model.named_parameters() if "embed_tokens" not in n)
    head_bytes = _nbytes(head)
    sliced = getattr(backend, "_head_weight", None) is not None
    head_read = head_bytes * HEAD_ROWS / head.shape[0] if sliced else head_bytes
    rows = batch * hidden * embedding.element_size()
    c = model.config
    kv_token = c.num_hidden_layers * 2 * c.num_key_value_heads * c.head_dim
    kv = batch * context * kv_token * embedding.element_size()
    return layers + head_read + rows + kv


def prompts(batch: int) -> list[list[int]]:
    # token ids of ordinary words; content does not matter for the cost, only the length
    return [
        [*PROMPT_PREFIX, *[1000 + (7 * i + j) % 5000 for j in range(PROMPT_WORDS)], *PROMPT_SUFFIX]
        for i in range(batch)
    ]


def forced_rows(batch: int, tokens: int) -> list[RowSampling]:
    return [RowSampling(seed=i, max_new_tokens=tokens, min_new_tokens=tokens) for i in range(batch)]


def timed_ours(
    backend: HFBackend, snac: TorchSnacDecoder, batch: int, tokens: int, device: str
) -> tuple[float, float]:
    """(generation seconds, SNAC seconds) for one batch of forced-length requests."""
    sync(device)
    start = time.perf_counter()
    generated = backend.generate(prompts(batch), forced_rows(batch, tokens))
    sync(device)
    mid = time.perf_counter()
    snac.decode([unpack(row).frames for row in generated], list(range(batch)))
    sync(device)
    return mid - start, time.perf_counter() - mid


def naive_chunk(
    model: torch.nn.Module, snac: TorchSnacDecoder, tokens: int, device: str
) -> tuple[float, float]:
    """One default `generate` call for one chunk, then SNAC for it: (gen s, SNAC s)."""
    ids = torch.tensor(prompts(1), device=device)
    sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(  # type: ignore[operator]
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=True,
            temperature=0.4,
            top_p=0.9,
            repetition_penalty=1.1,
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            eos_token_id=EOS_SPEECH,
            pad_token_id=PAD_ID,
        )
    sync(device)
    mid = time.perf_counter()
    new = out[0, ids.shape[1] :].tolist()
    # random weights write any token: count the same SNAC work with valid codes
    codes = [AUDIO_BASE + (i % SLOTS) * CODEBOOK + t % CODEBOOK for i, t in enumerate(new)]
    snac.decode([unpack(codes).frames], [0])
    sync(device)
    return mid - start, time.perf_counter() - mid


def peak_gb(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 1e9 if device.startswith("cuda") else float("nan")


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


class ForcedLengthEngine(Maya1Engine):
    """The real engine, every request forced to the same number of tokens, with each
    stage's wall time added up (stage two runs on the batcher's decode thread)."""

    forced_tokens = 0
    generate_seconds = 0.0
    decode_seconds = 0.0

    def sampling(self, request: SynthesisRequest, attempt: int = 0) -> RowSampling:
        row = super().sampling(request, attempt)
        return replace(row, max_new_tokens=self.forced_tokens, min_new_tokens=self.forced_tokens)

    def generate_batch(self, requests: Sequence[SynthesisRequest]) -> list[object]:
        start = time.perf_counter()
        try:
            return super().generate_batch(requests)
        finally:
            self.generate_seconds += time.perf_counter() - start

    def decode_batch(
        self, requests: Sequence[SynthesisRequest], generated: Sequence[object]
    ) -> list[SynthesisResult]:
        start = time.perf_counter()
        try:
            return super().decode_batch(requests, generated)
        finally:
            self.decode_seconds += time.perf_counter() - start


@dataclass
class BatcherRun:
    seconds: float
    batches: int
    generate_seconds: float
    decode_seconds: float


def run_batcher(
    backend: HFBackend, snac: TorchSnacDecoder, *, batch: int, requests: int, tokens: int
) -> BatcherRun:
    """`requests` forced-length chunks submitted from many threads through the
    DynamicBatcher in front of the engine's two stages."""
    from transformers import AutoTokenizer

    tokenizer_dir = Path(tempfile.mkdtemp(prefix="bench-tokenizer-"))
    build_tokenizer(tokenizer_dir)
    engine = ForcedLengthEngine(
        backend=backend,
        tokenizer=AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True),
        decoder=snac,
        model_version="bench",
        max_malformed=1.0,  # random weights: the frames are valid by construction anyway
    )
    engine.forced_tokens = tokens
    batcher = DynamicBatcher(engine, max_batch=batch, max_wait_ms=20)
    texts = [f"Sentence number {i} of the benchmark book." for i in range(requests)]

    def one(text: str) -> None:
        batcher.submit(SynthesisRequest(text=text, voice="a calm narrator")).result()

    start = time.perf_counter()
    with ThreadPoolExecutor(min(requests, 2 * batch)) as pool:
        list(pool.map(one, texts))
    seconds = time.perf_counter() - start
    batcher.close()
    return BatcherRun(
        seconds, batcher.stats.batches, engine.generate_seconds, engine.decode_seconds
    )


def parity_or_exit(model: torch.nn.Module, precision: str) -> float:
    """The KV-parity check at these shapes; exits (nothing timed) when it fails."""
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    tolerance = SELF_CHECK_TOLERANCE.get(dtype, SELF_CHECK_TOLERANCE["bfloat16"])
    rows = [prompts(1)[0], prompts(1)[0][: PROMPT_WORDS // 2]]  # one row left-padded
    difference = kv_parity_max_diff(model, rows, steps=PARITY_STEPS, pad_id=PAD_ID)
    progress(f"{precision}: KV parity max |logit diff| {difference:.3g} (<= {tolerance:g})")
    if not difference <= tolerance:
        sys.exit(
            f"maya1_throughput: KV parity failed for {precision} ({difference:.3g} > "
            f"{tolerance:g}): cached decoding does not match a full forward; nothing timed"
        )
    return difference


def probe(run: Callable[[int], float], tokens: int = 2 * SLOTS) -> float:
    """Seconds per step of `run(tokens)`, after one untimed warm-up call (compilation,
    allocator, kernels)."""
    run(tokens)
    return run(tokens) / tokens


def measure(args: argparse.Namespace) -> tuple[float, dict[str, float], list[Row], list[str]]:
    device = args.device
    per_precision = len(args.batches) + 2  # the batches, the naive path, the batcher
    budget = Budget(args.budget_seconds, per_precision * len(args.precisions))
    rows: list[Row] = []
    notes: list[str] = []
    bandwidth, snac = 0.0, None
    snr: dict[str, float] = {}
    for precision in args.precisions:
        if precision == "int8" and importlib.util.find_spec("torchao") is None:
            notes.append("int8: not measured (torchao is not installed)")
            budget.slices -= per_precision
            continue
        reset_peak(device)
        progress(f"{precision}: building the model ({args.shapes} shapes)")
        model = build_model(args.shapes, precision, device)
        parity_or_exit(model, precision)  # before anything is timed
        if snac is None:
            progress("copy bandwidth, SNAC precision")
            bandwidth = copy_bandwidth(device)
            snac, snr = load_snac(device, args.snac_dtype)
            progress(f"SNAC SNR against fp32: {snr}")
        rows += measure_precision(args, model, precision, budget, bandwidth, snac, notes)
        del model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return bandwidth, snr, rows, notes


def load_snac(device: str, dtype: str) -> tuple[TorchSnacDecoder, dict[str, float]]:
    """SNAC 24 kHz (random weights) in `dtype`, and the SNR of its fp16 and bf16 decodes
    against fp32 on 2 s of codes."""
    snac_dir = build_tiny_snac(Path(tempfile.mkdtemp(prefix="bench-snac-")))
    frames = 24 if device.startswith("cuda") else 8  # 2 s; on a CPU bf16 convolutions crawl
    codes = [AUDIO_BASE + (i % SLOTS) * CODEBOOK + (i * 37) % CODEBOOK for i in range(7 * frames)]
    snr = precision_snr(
        lambda name: TorchSnacDecoder(snac_dir, device=device, dtype=name),
        unpack(codes).frames,
        device=device,
    )
    return TorchSnacDecoder(snac_dir, device=device, dtype=dtype), snr


_START = time.perf_counter()


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - _START:6.1f} s] {message}", file=sys.stderr, flush=True)


def measure_precision(
    args: argparse.Namespace,
    model: torch.nn.Module,
    precision: str,
    budget: Budget,
    bandwidth: float,
    snac: TorchSnacDecoder,
    notes: list[str],
) -> list[Row]:
    """The naive path, our path at every batch size, and the batcher, for one model."""
    device, wanted = args.device, args.tokens
    backend = HFBackend(model, pad_id=PAD_ID, compile=args.compile)
    context0 = len(prompts(1)[0])

    def roofline(batch: int, tokens: int) -> float:
        return batch * bandwidth / step_bytes(backend, batch, context0 + tokens / 2)

    def naive_run(n: int) -> float:
        return sum(naive_chunk(model, snac, n, device))

    rows: list[Row] = []
    progress(f"{precision}: naive path")
    if budget.left() <= 0:
        notes.append(f"{precision}: not measured (the budget was spent)")
        return rows
    tokens = fitting_tokens(budget.take() / args.naive_chunks, probe(naive_run), wanted)
    gen = dec = 0.0
    for _ in range(args.naive_chunks):
        g, s = naive_chunk(model, snac, tokens, device)
        gen, dec = gen + g, dec + s
    total = args.naive_chunks * tokens
    audio = total / TOKENS_PER_SECOND
    rows.append(
        Row(
            precision,
            "naive",
            1,
            tokens,
            total / gen,
            audio / (gen + dec),
            dec / (gen + dec),
            peak_gb(device),
            roofline(1, tokens),
        )
    )
    progress(str(rows[-1]))
    largest, step = 0, 0.0
    for index, batch in enumerate(args.batches):
        reset_peak(device)

        def ours(n: int, batch: int = batch) -> float:
            return sum(timed_ours(backend, snac, batch, n, device))

        if budget.left() <= 0:
            notes.append(f"{precision} batch {batch}: not measured (the budget was spent)")
            budget.slices -= 1
            continue
        try:
            step = probe(ours)
            # compiled: one untimed run at the timed length first (its cache shape's graphs)
            runs = 2 if backend.compiled else 1
            tokens = fitting_tokens(budget.take() / runs, step, wanted)
            if backend.compiled:
                ours(tokens)
            gen, dec = timed_ours(backend, snac, batch, tokens, device)
        except Exception as exc:  # out of memory: the largest batch that fits is known
            notes.append(f"{precision} batch {batch}: {type(exc).__name__}: {exc}"[:200])
            budget.slices -= len(args.batches) - index - 1
            break
        largest = batch
        audio = batch * tokens / TOKENS_PER_SECOND
        rows.append(
            Row(
                precision,
                "ours",
                batch,
                tokens,
                batch * tokens / gen,
                audio / (gen + dec),
                dec / (gen + dec),
                peak_gb(device),
                roofline(batch, tokens),
            )
        )
        progress(str(rows[-1]))
    if not largest or budget.left() <= 0:
        notes.append(f"{precision} batcher: not measured (no batch fitted, or no time left)")
        return rows
    requests = args.batcher_batches * largest
    tokens = fitting_tokens(budget.take() * largest / requests, step, wanted)  # largest's pace
    run = run_batcher(backend, snac, batch=largest, requests=requests, tokens=tokens)
    done = requests * tokens
    stages = run.generate_seconds + run.decode_seconds
    rows.append(
        Row(
            precision,
            f"batcher ({run.batches} batches)",
            largest,
            tokens,
            done / run.seconds,
            done / TOKENS_PER_SECOND / run.seconds,
            run.decode_seconds / stages,
            peak_gb(device),
            roofline(largest, tokens),
            f"stages {run.generate_seconds:.1f} s LLM + {run.decode_seconds:.1f} s SNAC = "
            f"{stages:.1f} s in {run.seconds:.1f} s wall ({stages / run.seconds:.2f}x overlap)",
        )
    )
    progress(str(rows[-1]))
    return rows


def table(bandwidth: float, snr: dict[str, float], rows: list[Row], notes: list[str]) -> str:
    naive = {r.precision: r.x_real_time for r in rows if r.path == "naive"}
    lines = [
        f"Copy bandwidth measured in the same run: **{bandwidth / 1e9:.1f} GB/s**. SNAC "
        "against fp32 (SNR): "
        + ", ".join(f"{dtype} {value:.1f} dB" for dtype, value in snr.items())
        + ".",
        "",
        "| precision | path | batch | tokens/request | tokens/s | x real time | vs naive "
        "| of roofline | SNAC share | peak GB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        vs = r.x_real_time / naive[r.precision] if naive.get(r.precision) else float("nan")
        lines.append(
            f"| {r.precision} | {r.path} | {r.batch} | {r.tokens} | {_num(r.tokens_per_s)} | "
            f"{_num(r.x_real_time)} | {'n/a' if vs != vs else f'{vs:.1f}x'} | "
            f"{r.tokens_per_s / r.roofline_tokens_per_s:.1%} | {r.snac_share:.0%} | "
            f"{'n/a' if r.peak_gb != r.peak_gb else f'{r.peak_gb:.1f}'} |"
        )
    lines += ["", *[f"- {r.precision} batcher: {r.note}" for r in rows if r.note]]
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines)


def _num(value: float) -> str:
    """1,234 for large numbers, 3 significant digits for small ones (CPU runs)."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--shapes", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precisions", default=None, help="comma list (default: by device)")
    parser.add_argument("--batches", default=None, help="comma list of batch sizes")
    parser.add_argument("--seconds", type=float, default=None, help="audio per request, at most")
    parser.add_argument(
        "--budget-seconds",
        type=float,
        default=330.0,
        help="the whole run, warm-up included (default 330: 6 min with room)",
    )
    parser.add_argument("--naive-chunks", type=int, default=2)
    parser.add_argument(
        "--batcher-batches",
        type=int,
        default=4,
        help="the batcher's chunks, in batches of the largest size that fit",
    )
    parser.add_argument("--snac-dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--compile", action="store_true", help="torch.compile the decode step")
    parser.add_argument("--write", type=Path, default=None, help="append the table here")
    args = parser.parse_args(argv)
    gpu = args.device.startswith("cuda")
    args.precisions = (args.precisions or ("bf16,fp16,int8" if gpu else "fp32")).split(",")
    args.batches = [int(b) for b in (args.batches or ("1,16,64,256" if gpu else "1,4")).split(",")]
    args.seconds = args.seconds or (6.0 if gpu else 1.0)
    args.tokens = max(MIN_TOKENS, round(args.seconds * TOKENS_PER_SECOND / SLOTS) * SLOTS)
    if args.budget_seconds <= 0:
        parser.error("--budget-seconds must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # forced lengths reach every row's limit by design: that is not worth a warning here
    logging.getLogger("pipeline.engines.maya1").setLevel(logging.ERROR)
    started = datetime.now(UTC)
    clock = time.perf_counter()
    bandwidth, snr, rows, notes = measure(args)
    gpu = args.device.startswith("cuda")
    machine = torch.cuda.get_device_name() if gpu else cpu_name()
    command = "PYTHONPATH=. python " + " ".join(["bench/maya1_throughput.py", *sys.argv[1:]])
    report = "\n".join(
        [
            f"## Maya1 throughput ({args.shapes} shapes, {args.device}) — "
            f"{started:%Y-%m-%d %H:%M} UTC",
            "",
            f"Device: {machine} ({platform.machine()}), torch {torch.__version__}, Python "
            f"{platform.python_version()}. Command: `{command}`. Whole run "
            f"{time.perf_counter() - clock:.0f} s (budget {args.budget_seconds:g} s); at most "
            f"{args.tokens} tokens ({args.seconds:g} s of audio) per request, fewer where the "
            "budget said so (tokens/request). SNAC decodes in "
            f"{args.snac_dtype}.",
            "",
            table(bandwidth, snr, rows, notes),
            "",
        ]
    )
    print(report)
    if args.write:
        with args.write.open("a", encoding="utf-8") as out:
            out.write("\n" + report)


if __name__ == "__main__":
    main()
