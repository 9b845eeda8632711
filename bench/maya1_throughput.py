"""Maya1 generation throughput: batched vs the naive path vs the memory-bandwidth roofline.

    python bench/maya1_throughput.py --shapes maya1 --device cuda \\
        [--precisions bf16,fp16,int8] [--batches 1,8,32,64,128,256] [--seconds 6] \\
        [--write docs/benchmarks.md]
    python bench/maya1_throughput.py --shapes tiny --device cpu [--write docs/benchmarks.md]

Random weights at the real Maya1 shapes (Llama-3.2-3B: 28 layers, hidden 3072, FFN 8192,
24/8 heads, vocabulary 156940, tied embeddings) or a tiny model of the same layout for the
CPU variant, plus a SNAC 24 kHz decoder with random weights. Every configuration generates
exactly the same number of tokens per request (`--seconds` of audio at 82 tokens/s: the
stop token is masked until then), so every row of the table does the same work.

In ONE run: the device's copy bandwidth, then for each precision and batch size our decode
path (the engine's HF backend: static KV cache, constrained per-row sampling, SNAC decode
batched) — generated tokens/s, seconds of audio per second (x real time, 82 tokens = 1 s),
share of the time in SNAC, peak device memory — against

- the naive path: one default `model.generate` call per chunk (dynamic cache, HF's own
  sampling, batch 1), then SNAC for that chunk alone, and
- the roofline: every decode step must read all weights once plus the KV cache of every
  row, at the measured copy bandwidth: tokens/s <= batch * bandwidth / (weights + KV).

Finally the dynamic batcher: the same chunks submitted from many threads through
`with_batching(engine)` (SNAC of one batch overlapped with generation of the next), against
the naive path's throughput.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.bench_embedded import cpu_name  # noqa: E402
from pipeline.batching import DynamicBatcher  # noqa: E402
from pipeline.engines.base import SynthesisRequest  # noqa: E402
from pipeline.engines.maya1.backends.hf import HFBackend  # noqa: E402
from pipeline.engines.maya1.engine import Maya1Engine  # noqa: E402
from pipeline.engines.maya1.loading import quantize_int8, weight_dtype  # noqa: E402
from pipeline.engines.maya1.sampling import RowSampling  # noqa: E402
from pipeline.engines.maya1.snac.torch import TorchSnacDecoder  # noqa: E402
from pipeline.engines.maya1.tokens import (  # noqa: E402
    AUDIO_BASE,
    CODEBOOK,
    EOS_SPEECH,
    PROMPT_PREFIX,
    PROMPT_SUFFIX,
    SLOTS,
    TOKENS_PER_SECOND,
)
from pipeline.engines.maya1.unpack import unpack  # noqa: E402
from tests.support.maya1_fixtures import build_tokenizer  # noqa: E402
from tests.support.snac_fixtures import build_tiny_snac  # noqa: E402

VOCAB = 156_940
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
BYTES = {"bf16": 2, "fp16": 2, "fp32": 4, "int8": 1}


@dataclass
class Row:
    precision: str
    path: str  # "naive", "ours" or "batcher"
    batch: int
    tokens_per_s: float
    x_real_time: float
    snac_share: float
    peak_gb: float
    roofline_tokens_per_s: float
    vs_naive: float = 0.0


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
        pad_token_id=128263,
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


def weight_bytes(model: torch.nn.Module, precision: str) -> float:
    """Bytes one decode step reads: every parameter once (tied embeddings once, as the LM
    head; the input embedding reads only B rows)."""
    params = sum(p.numel() for p in model.parameters())
    return params * BYTES[precision]


def kv_bytes_per_token(model: torch.nn.Module, precision: str) -> float:
    c = model.config
    cache_bytes = 2 if precision == "int8" else BYTES[precision]  # weight-only: cache in bf16
    return c.num_hidden_layers * 2 * c.num_key_value_heads * c.head_dim * cache_bytes


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
    frames = [unpack(row).frames for row in generated]
    snac.decode(frames, list(range(batch)))
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
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=True,
            temperature=0.4,
            top_p=0.9,
            repetition_penalty=1.1,
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            eos_token_id=EOS_SPEECH,
            pad_token_id=128263,
        )
    sync(device)
    mid = time.perf_counter()
    new = out[0, ids.shape[1] :].tolist()
    # random weights write any token: the naive path would fold them (% 4096); count the
    # same SNAC work with valid codes of the same length
    codes = [AUDIO_BASE + (i % SLOTS) * CODEBOOK + t % CODEBOOK for i, t in enumerate(new)]
    snac.decode([unpack(codes).frames], [0])
    sync(device)
    return mid - start, time.perf_counter() - mid


def peak_gb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 1e9
    return 0.0


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def roofline(model: torch.nn.Module, precision: str, batch: int, tokens: int, bw: float) -> float:
    """Tokens/s if each step only had to read the weights and the rows' KV caches."""
    context = len(prompts(1)[0]) + tokens / 2  # mean cache length over the generation
    step_bytes = weight_bytes(model, precision) + batch * context * kv_bytes_per_token(
        model, precision
    )
    return batch * bw / step_bytes


class ForcedLengthEngine(Maya1Engine):
    """The real engine, every request forced to the same number of tokens."""

    forced_tokens = 0

    def sampling(self, request: SynthesisRequest, attempt: int = 0) -> RowSampling:
        row = super().sampling(request, attempt)
        return replace(row, max_new_tokens=self.forced_tokens, min_new_tokens=self.forced_tokens)


def run_batcher(
    backend: HFBackend,
    snac: TorchSnacDecoder,
    *,
    batch: int,
    requests: int,
    tokens: int,
    device: str,
) -> tuple[float, int]:
    """Seconds for `requests` forced-length chunks submitted from many threads through the
    DynamicBatcher in front of the engine's two stages; and the batches it formed."""
    tokenizer_dir = Path(tempfile.mkdtemp(prefix="bench-tokenizer-"))
    build_tokenizer(tokenizer_dir)
    from transformers import AutoTokenizer

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
    threads = min(requests, 2 * batch)

    def one(text: str) -> None:
        batcher.submit(SynthesisRequest(text=text, voice="a calm narrator")).result()

    sync(device)
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, texts))
    sync(device)
    seconds = time.perf_counter() - start
    batcher.close()
    return seconds, batcher.stats.batches


def measure(args: argparse.Namespace) -> tuple[float, list[Row]]:
    device = args.device
    tokens = round(args.seconds * TOKENS_PER_SECOND / SLOTS) * SLOTS
    bandwidth = copy_bandwidth(device)
    snac_dir = Path(tempfile.mkdtemp(prefix="bench-snac-"))
    build_tiny_snac(snac_dir)
    snac_dtype = "float32" if device == "cpu" else "float16"
    snac = TorchSnacDecoder(snac_dir, device=device, dtype=snac_dtype)
    rows: list[Row] = []
    for precision in args.precisions:
        reset_peak(device)
        model = build_model(args.shapes, precision, device)
        backend = HFBackend(model, pad_id=128263, compile=args.compile)
        timed_ours(backend, snac, 1, 7 * 8, device)  # warm-up (kernels, allocator)
        naive_gen = naive_snac = 0.0
        for _ in range(args.naive_chunks):
            g, s = naive_chunk(model, snac, tokens, device)
            naive_gen, naive_snac = naive_gen + g, naive_snac + s
        n = args.naive_chunks
        naive_tps = n * tokens / naive_gen
        naive_row = Row(
            precision,
            "naive",
            1,
            naive_tps,
            n * tokens / TOKENS_PER_SECOND / (naive_gen + naive_snac),
            naive_snac / (naive_gen + naive_snac),
            peak_gb(device),
            roofline(model, precision, 1, tokens, bandwidth),
            1.0,
        )
        rows.append(naive_row)
        for batch in args.batches:
            reset_peak(device)
            try:
                gen, dec = timed_ours(backend, snac, batch, tokens, device)
            except Exception as exc:  # out of memory: the largest batch that fits is known
                print(f"{precision} batch {batch}: {type(exc).__name__}: {exc}", file=sys.stderr)
                break
            audio = batch * tokens / TOKENS_PER_SECOND
            tps = batch * tokens / gen
            rows.append(
                Row(
                    precision,
                    "ours",
                    batch,
                    tps,
                    audio / (gen + dec),
                    dec / (gen + dec),
                    peak_gb(device),
                    roofline(model, precision, batch, tokens, bandwidth),
                    (audio / (gen + dec)) / naive_row.x_real_time,
                )
            )
            print(rows[-1], file=sys.stderr)
        if args.batcher_requests:
            batch = max(b for b in args.batches if any(r.batch == b for r in rows))
            seconds, batches = run_batcher(
                backend,
                snac,
                batch=batch,
                requests=args.batcher_requests,
                tokens=tokens,
                device=device,
            )
            audio = args.batcher_requests * tokens / TOKENS_PER_SECOND
            rows.append(
                Row(
                    precision,
                    f"batcher ({batches} batches)",
                    batch,
                    args.batcher_requests * tokens / seconds,
                    audio / seconds,
                    float("nan"),
                    peak_gb(device),
                    roofline(model, precision, batch, tokens, bandwidth),
                    (audio / seconds) / naive_row.x_real_time,
                )
            )
        del backend, model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return bandwidth, rows


def table(bandwidth: float, rows: list[Row]) -> str:
    lines = [
        f"Copy bandwidth measured in the same run: **{bandwidth / 1e9:.1f} GB/s**.",
        "",
        "| precision | path | batch | tokens/s | x real time | vs naive | of roofline "
        "| SNAC share | peak GB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        share = "" if r.snac_share != r.snac_share else f"{r.snac_share:.0%}"
        lines.append(
            f"| {r.precision} | {r.path} | {r.batch} | {r.tokens_per_s:,.0f} | "
            f"{r.x_real_time:.1f} | {r.vs_naive:.1f}x | "
            f"{r.tokens_per_s / r.roofline_tokens_per_s:.0%} | {share} | {r.peak_gb:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precisions", default=None, help="comma list (default: by device)")
    parser.add_argument("--batches", default=None, help="comma list of batch sizes")
    parser.add_argument("--seconds", type=float, default=None, help="audio per request")
    parser.add_argument("--naive-chunks", type=int, default=2)
    parser.add_argument("--batcher-requests", type=int, default=None)
    parser.add_argument("--compile", action="store_true", help="torch.compile the decode step")
    parser.add_argument("--write", type=Path, default=None, help="append the table here")
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    args.precisions = (args.precisions or ("bf16,fp16,int8" if gpu else "fp32")).split(",")
    args.batches = [
        int(b) for b in (args.batches or ("1,8,32,64,128,256" if gpu else "1,4,16")).split(",")
    ]
    args.seconds = args.seconds or (6.0 if gpu else 1.0)
    if args.batcher_requests is None:
        args.batcher_requests = 256 if gpu else 32
    # forced lengths reach every row's limit by design: that is not worth a warning here
    logging.getLogger("pipeline.engines.maya1").setLevel(logging.ERROR)
    started = datetime.now(UTC)
    bandwidth, rows = measure(args)
    machine = torch.cuda.get_device_name() if gpu else cpu_name()
    command = "python " + " ".join(["bench/maya1_throughput.py", *sys.argv[1:]])
    report = "\n".join(
        [
            f"## Maya1 throughput ({args.shapes} shapes, {args.device}) — "
            f"{started:%Y-%m-%d %H:%M} UTC",
            "",
            f"Machine: {machine} ({platform.machine()}), torch {torch.__version__}. "
            f"Command: `{command}`. Every request generates "
            f"{round(args.seconds * TOKENS_PER_SECOND / SLOTS) * SLOTS} tokens "
            f"({args.seconds:g} s of audio).",
            "",
            table(bandwidth, rows),
            "",
        ]
    )
    print(report)
    if args.write:
        with args.write.open("a", encoding="utf-8") as out:
            out.write("\n" + report)


if __name__ == "__main__":
    main()
