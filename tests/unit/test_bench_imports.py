"""The GPU benchmark runs on a bare GPU machine: Python, torch, transformers, numpy,
safetensors, tokenizers, huggingface-hub, onnx, onnxruntime, and the wheels listed in
bench/gpu-wheels.txt, nothing else (no pydantic, SQLAlchemy, PyAV, ...). This imports the
benchmark in a fresh interpreter whose import system refuses every other third-party
package, so an import that would pull one in fails here instead of on the GPU machine."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "maya1_throughput.py"
WHEELS = ROOT / "bench" / "gpu-wheels.txt"

# What a bare GPU machine has (issue 17), by import name, and what those import in turn.
MACHINE = {
    "torch",
    "transformers",
    "numpy",
    "safetensors",
    "tokenizers",
    "huggingface_hub",
    "onnx",
    "onnxruntime",
}
# Dependencies that come with the packages above (their own requirements).
THEIR_DEPENDENCIES = {
    "filelock",
    "fsspec",
    "jinja2",
    "markupsafe",
    "networkx",
    "sympy",
    "mpmath",
    "typing_extensions",
    "triton",
    "packaging",
    "yaml",
    "regex",
    "requests",
    "tqdm",
    "hf_xet",
    "httpx",
    "httpcore",
    "anyio",
    "sniffio",
    "h11",
    "idna",
    "certifi",
    "urllib3",
    "charset_normalizer",
    "google",
    "protobuf",
    "ml_dtypes",
    "flatbuffers",
    "coloredlogs",
    "humanfriendly",
    "shellingham",
    "typer",
    "click",
    "rich",
    "markdown_it",
    "mdurl",
    "pygments",
    "annotated_doc",
    "nvidia",
    "cuda",
    "opt_einsum",
    "optree",
    "setuptools",
    "pkg_resources",
    "_distutils_hack",
    "distutils",
}
# Wheel names whose import name differs.
IMPORT_NAMES = {"snac": "snac", "einops": "einops"}


def wheel_modules() -> set[str]:
    names = set()
    for line in WHEELS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"bench/gpu-wheels.txt: {line!r} is not name==version"
            names.add(IMPORT_NAMES.get(name.lower(), name.lower().replace("-", "_")))
    return names


def test_gpu_wheels_are_pinned_and_few() -> None:
    assert wheel_modules() == {"snac", "einops"}


def test_the_benchmark_imports_only_what_a_bare_gpu_machine_has() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    allowed = sorted(
        MACHINE | THEIR_DEPENDENCIES | wheel_modules() | {"pipeline", "tests", "bench"}
    )
    script = textwrap.dedent(
        f"""
        import importlib.abc, importlib.util, sys, sysconfig
        allowed = set({allowed!r})
        root = {str(ROOT)!r}
        stdlib = set(sys.stdlib_module_names)
        site = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
        refused = []

        project = tuple(f"{{root}}/{{folder}}/" for folder in ("pipeline", "bench", "tests"))

        def importer():
            frame = sys._getframe(2)
            while frame is not None and (
                frame.f_code.co_filename.startswith("<") or "importlib" in frame.f_code.co_filename
            ):
                frame = frame.f_back
            return frame.f_code.co_filename if frame is not None else ""

        # Refuses what the project's own code imports beyond the bare machine's packages.
        # What torch or transformers import (their optional extras, looked up when
        # installed) is theirs: on the bare machine those are simply absent.
        class Bare(importlib.abc.MetaPathFinder):

            def find_spec(self, name, path=None, target=None):
                top = name.split(".")[0]
                if top in allowed or top in stdlib or top.startswith("_"):
                    return None
                if not importer().startswith(project):
                    return None
                refused.append(name)
                raise ModuleNotFoundError(f"not on a bare GPU machine: {{name}}")

        sys.meta_path.insert(0, Bare())
        sys.argv = ["maya1_throughput.py"]
        spec = importlib.util.spec_from_file_location("maya1_throughput", {str(BENCH)!r})
        module = importlib.util.module_from_spec(spec)
        sys.modules["maya1_throughput"] = module
        spec.loader.exec_module(module)
        module.parse_args(["--shapes", "tiny", "--device", "cpu"])
        assert not refused, refused
        project_modules = [name for name in sys.modules if name.startswith("pipeline")]
        assert "pipeline.config" not in project_modules, "pipeline.config needs pydantic"
        assert "pipeline.engines.registry" not in project_modules
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
