"""The filters mastering and measuring use, with SciPy imported on first use.

Importing scipy.signal costs about 0.7 s (it builds its docstrings at import), more than
the rest of `voicebatch render`'s start-up together; a render needs it only once audio
exists. `preload()` imports it on a background thread while the engine loads and renders,
where it costs only idle CPU.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt


@cache
def k_weighting(rate: int) -> npt.NDArray[np.float64]:
    """The BS.1770-4 K-weighting pre-filter at `rate` as second-order sections: a +4 dB
    high shelf at 1500 Hz, then a high pass at 38 Hz (the RLB curve). RBJ cookbook
    designs, the same coefficients pyloudnorm's "K-weighting" meter uses."""
    sections = []
    for gain_db, q, fc, kind in ((4.0, 1 / np.sqrt(2), 1500.0, "shelf"), (0.0, 0.5, 38.0, "pass")):
        a_ = 10 ** (gain_db / 40.0)
        w0 = 2.0 * np.pi * (fc / rate)
        alpha = np.sin(w0) / (2.0 * q)
        cos = np.cos(w0)
        if kind == "shelf":
            root = 2 * np.sqrt(a_) * alpha
            b = [
                a_ * ((a_ + 1) + (a_ - 1) * cos + root),
                -2 * a_ * ((a_ - 1) + (a_ + 1) * cos),
                a_ * ((a_ + 1) + (a_ - 1) * cos - root),
            ]
            a = [(a_ + 1) - (a_ - 1) * cos + root, 2 * ((a_ - 1) - (a_ + 1) * cos)]
            a.append((a_ + 1) - (a_ - 1) * cos - root)
        else:
            b = [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2]
            a = [1 + alpha, -2 * cos, 1 - alpha]
        sections.append([*(v / a[0] for v in b), *(v / a[0] for v in a)])
    return np.array(sections, dtype=np.float64)


def sosfilt(sos: Any, audio: Any, zi: Any, axis: int = -1) -> Any:
    """scipy.signal.sosfilt with a filter state carried between calls."""
    from scipy.signal import sosfilt as scipy_sosfilt

    return scipy_sosfilt(sos, audio, axis=axis, zi=zi)


def upsample4(audio: Any, axis: int = -1) -> Any:
    """4x oversampling for true peak (BS.1770-4 Annex 2): scipy.signal.resample_poly."""
    from scipy.signal import resample_poly

    return resample_poly(audio, 4, 1, axis=axis)


def lfilter(b: list[float], a: list[float], audio: Any) -> Any:
    from scipy.signal import lfilter as scipy_lfilter

    return scipy_lfilter(b, a, audio)


def min_then_mean(values: npt.NDArray[np.float32], min_size: int, mean_size: int) -> Any:
    """A moving minimum over `min_size` samples, then a moving mean over `mean_size`
    (scipy.ndimage's filters, edges reflected)."""
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    return uniform_filter1d(minimum_filter1d(values, size=min_size), size=mean_size)


_preloading: list[threading.Thread] = []


def _import_scipy() -> None:
    import scipy.ndimage
    import scipy.signal  # noqa: F401


def preload() -> None:
    """Start importing SciPy on a background thread (once); later calls find it loaded."""
    if not _preloading:
        thread = threading.Thread(target=_import_scipy, name="scipy-preload", daemon=True)
        _preloading.append(thread)
        thread.start()
