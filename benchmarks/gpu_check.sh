#!/usr/bin/env bash
# Launch benchmarks/gpu_check.py on a fresh GPU machine, from the repository root:
#
#   bash benchmarks/gpu_check.sh --out OUT [gpu_check.py options]
#
# Python: $PYTHON, else .venv/bin/python when `make install` made it, else python3 (the
# lent GPU machine's, which has torch, torchvision, h5py, click, numpy, scipy and tqdm but
# no package registry). Wheels in .whl/ (`make gpu-wheels`: PyAV, the one package that
# machine lacks) are installed into a temporary folder first, without any network.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if compgen -G ".whl/*.whl" > /dev/null; then
    site=$(mktemp -d /tmp/hgrnn_site.XXXXXX)
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target "$site" .whl/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
exec "$PYTHON" benchmarks/gpu_check.py "$@"
