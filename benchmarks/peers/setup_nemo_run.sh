#!/usr/bin/env bash
# Benchmark-only virtualenv holding NeMo-Run, the peer that bench_launch_submit.py measures
# stoker against. Never part of stoker's own dependencies (pyproject.toml does not name it).
#
#     bash benchmarks/peers/setup_nemo_run.sh          # creates benchmarks/peers/.venv-nemo-run
#
# torch is pinned to the CPU build that lies on local disk (2.13.0): an unpinned torch would
# pull several GB of CUDA wheels. The exact versions installed are written to
# benchmarks/peers/nemo-run-versions.txt (pip freeze) for BENCHMARKS.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-nemo-run"
python="${PYTHON:-python3.11}"
version="${NEMO_RUN_VERSION:-0.11.1}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -c "$here/nemo-run-constraints.txt" "nemo-run==$version"
"$venv/bin/python" -m pip freeze > "$here/nemo-run-versions.txt"
"$venv/bin/python" -c "import nemo_run, importlib.metadata as m; print('nemo-run', m.version('nemo-run'), 'at', nemo_run.__file__)"
