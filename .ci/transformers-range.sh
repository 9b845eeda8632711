#!/usr/bin/env bash
# The maya1 and SNAC unit tests on the oldest and the newest transformers release that the
# `maya1` extra allows (pyproject.toml): transformers renames forward arguments between
# minor releases (past_key_values -> cache in 5.24), and a name a forward does not take
# vanishes into its **kwargs without a word.
#
# No new virtualenv is built: for each release pip resolves, against the project's .venv,
# only what must change (transformers and the few packages it pins, e.g. tokenizers and
# huggingface-hub), installs just those into a throwaway folder (--no-deps --target), and
# the tests run with that folder first on PYTHONPATH. Downloads come from pip's cache.
# TRANSFORMERS_RANGE_SKIP_INSTALLED=1 skips a release the venv already holds (`make test`
# has just run these tests on it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${VENV:-.venv}/bin/python"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The allowed range, and the oldest and newest published releases inside it.
"$PY" - > "$work/range" <<'PYTHON'
import re, subprocess, sys, tomllib
from packaging.requirements import Requirement
from packaging.version import Version

extra = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["maya1"]
spec = next(Requirement(r).specifier for r in extra if Requirement(r).name == "transformers")
listing = subprocess.run(
    [sys.executable, "-m", "pip", "index", "versions", "transformers"],
    check=True, capture_output=True, text=True,
).stdout
found = re.search(r"Available versions: (.*)", listing)
if found is None:
    sys.exit(f"cannot list transformers releases: {listing!r}")
allowed = sorted(v for v in map(Version, found.group(1).split(", ")) if v in spec)
if not allowed:
    sys.exit(f"no transformers release matches the maya1 extra's {spec}")
print(allowed[0], allowed[-1])
PYTHON
read -r oldest newest < "$work/range"

# A package the venv's transformers requires but this release does not (kernels, which
# later 5.x releases require) stays importable from the venv: it is pinned to the range
# this release's own extras name for it, as an install asking for that extra would be.
cat > "$work/extras.py" <<'PYTHON'
import importlib.metadata, json, sys
from packaging.requirements import Requirement

def required(requirements):
    return {r.name.lower() for r in requirements if "extra" not in str(r.marker or "")}

report = json.load(open(sys.argv[1]))["install"]
release = next(
    (i["metadata"] for i in report if i["metadata"]["name"].lower() == "transformers"), None
)
if release is None:  # the venv holds this release already
    sys.exit(0)
theirs = [Requirement(r) for r in release.get("requires_dist", [])]
ours = [Requirement(r) for r in importlib.metadata.requires("transformers") or []]
leaked = required(ours) - required(theirs)
pins = {r.name.lower(): f"{r.name}{r.specifier}" for r in theirs if r.name.lower() in leaked}
for pin in pins.values():
    print(pin)
PYTHON
cat > "$work/pins.py" <<'PYTHON'
import json, sys

for item in json.load(open(sys.argv[1]))["install"]:
    print(item["metadata"]["name"] + "==" + item["metadata"]["version"])
PYTHON

for version in "$oldest" "$newest"; do
  started=$SECONDS
  overlay="$work/transformers-$version"
  "$PY" -m pip install --quiet --dry-run --report "$work/$version.json" "transformers==$version"
  mapfile -t extras < <("$PY" "$work/extras.py" "$work/$version.json")
  if ((${#extras[@]})); then
    "$PY" -m pip install --quiet --dry-run --report "$work/$version.json" \
      "transformers==$version" "${extras[@]}"
  fi
  mapfile -t pins < <("$PY" "$work/pins.py" "$work/$version.json")
  if ((${#pins[@]} == 0)) && [[ "${TRANSFORMERS_RANGE_SKIP_INSTALLED:-}" == 1 ]]; then
    # .ci/run sets this after `make test`, which ran these tests on the venv's release
    echo "== transformers $version is the venv's: covered by make test"
    continue
  fi
  if ((${#pins[@]})); then
    "$PY" -m pip install --quiet --no-deps --target "$overlay" "${pins[@]}"
  fi
  echo "== transformers $version (overlay: ${pins[*]:-none})"
  PYTHONPATH="$overlay" "$PY" -c "import transformers, sys; \
    sys.exit(0 if transformers.__version__ == '$version' else 'transformers ' + transformers.__version__)"
  PYTHONPATH="$overlay" "$PY" -m pytest -q -p no:randomly -p no:cacheprovider tests/unit -k 'maya1 or snac'
  echo "== transformers $version: $((SECONDS - started)) s"
done
