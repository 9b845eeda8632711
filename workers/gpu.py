"""GPU utilisation and memory of a render worker, read at each scrape.

The rule: `voicebatch_gpus` is always exported (0 on a CPU worker), and the per-GPU
series (`voicebatch_gpu_utilization_ratio`, `voicebatch_gpu_memory_used_bytes`,
`voicebatch_gpu_memory_total_bytes`, label `gpu`: the device index) only for GPUs that
exist, so a CPU worker never shows a made-up 0 % GPU. NVML (the `nvidia-ml-py` package,
in the maya1 extra) gives utilisation and memory; without it, when torch already runs on
CUDA in this process, memory comes from torch and utilisation is left out.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuReading:
    index: int
    memory_used: float  # bytes
    memory_total: float  # bytes
    utilization: float | None  # 0..1; None when only torch could be asked


@functools.cache
def _nvml() -> Any | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception as exc:  # no package, no driver: not an NVIDIA GPU host
        log.debug("NVML unavailable: %s", exc)
        return None


def read_gpus() -> list[GpuReading]:
    """One reading per visible GPU; [] on a CPU worker."""
    nvml = _nvml()
    if nvml is not None:
        readings = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            rates = nvml.nvmlDeviceGetUtilizationRates(handle)
            readings.append(
                GpuReading(index, float(memory.used), float(memory.total), rates.gpu / 100.0)
            )
        return readings
    torch = sys.modules.get("torch")  # never imported here: only if the engine uses it
    if torch is None or not torch.cuda.is_available():
        return []
    readings = []
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        readings.append(GpuReading(index, float(total - free), float(total), None))
    return readings


def gpu_metric_families(readings: list[GpuReading] | None = None) -> Iterator[Any]:
    """The GPU metric families for `readings` (default: read them now)."""
    from prometheus_client.core import GaugeMetricFamily

    readings = read_gpus() if readings is None else readings
    yield GaugeMetricFamily(
        "voicebatch_gpus",
        "GPUs this worker sees (0: a CPU worker, which exports no per-GPU series).",
        value=len(readings),
    )
    utilization = GaugeMetricFamily(
        "voicebatch_gpu_utilization_ratio",
        "Share of the last sample period the GPU was busy (NVML), by device index.",
        labels=["gpu"],
    )
    used = GaugeMetricFamily(
        "voicebatch_gpu_memory_used_bytes", "GPU memory in use, by device index.", labels=["gpu"]
    )
    total = GaugeMetricFamily(
        "voicebatch_gpu_memory_total_bytes", "GPU memory, by device index.", labels=["gpu"]
    )
    for reading in readings:
        label = [str(reading.index)]
        used.add_metric(label, reading.memory_used)
        total.add_metric(label, reading.memory_total)
        if reading.utilization is not None:
            utilization.add_metric(label, reading.utilization)
    yield from (utilization, used, total)
