#!/usr/bin/env bash
# One prepared pass on a CUDA machine: GPU tests, the training benchmark on the GPU (CUDA graphs and
# eager), and the whole study through Snakemake when it is installed.
#   MNIST_DIR=/path/to/mnist [WHEELS=/path/to/wheels] bash bench/gpu_check.sh [output folder]
# Needs torch, torchvision (the data-set registry; tests/test_data.py and the workflow's downloads import
# it), numpy, pandas, matplotlib, pyyaml and pytest; snakemake only for the last step. Given a wheel
# folder WHEELS (snakemake and those of its dependencies the machine lacks; GPU machines often have no
# internet), it first installs them from it.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/out}
mkdir -p "$out"
export PYTHONPATH=workflow:tests${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if [ -n "${WHEELS:-}" ]; then
    # Every wheel in the folder, without dependencies or an index, into a folder put on the path: the
    # machine's own packages (torch, numpy) stay as they are. Leave out of WHEELS what the machine has.
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$WHEELS"/*.whl &&
        export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
echo "== process start + CUDA context"
TIMEFORMAT="%R s wall"  # bash's own timer: /usr/bin/time is not on every image
time python3 -c "import torch; torch.zeros(1, device='cuda'); torch.cuda.synchronize()"
echo "== data cache"
python3 - "$MNIST_DIR" "$out/mnist.pt" <<'PY'
import sys, tempfile
from pathlib import Path
from mnist_sgd.data.cache import build_cache
from mnist_sgd.data.fetch import fetch_idx
from mnist_sgd.study.datasets import MNIST_SHA256
raw = Path(tempfile.mkdtemp())
for name, digest in MNIST_SHA256.items():
    fetch_idx(name, [sys.argv[1]], digest, raw / name)
build_cache(*(raw / name for name in MNIST_SHA256), sys.argv[2])
PY
echo "== tests"
xdist=$(python3 -c "import xdist" 2>/dev/null && echo "-n 4 --dist loadfile")
# shellcheck disable=SC2086  # $xdist: several words or none
python3 -m pytest -q -p no:cacheprovider -o addopts= -rfEs $xdist tests/test_gpu.py tests/test_devices.py tests/test_sgd.py tests/test_train.py tests/test_data.py 2>&1 | tail -25
echo "== one run through the program's command line, device auto"
TIMEFORMAT="%R s wall (process, CUDA start-up, data load, training, output)"
time python3 -m mnist_sgd.training.train --data "$out/mnist.pt" --metrics "$out/m.csv" --info "$out/i.json" --batch-size 1 2>&1 | tail -3
echo "== benchmark, program only, every run of the study (CUDA graphs, then eager launches)"
python3 bench/bench_training.py --data "$out/mnist.pt" --device cuda --no-reference
python3 bench/bench_training.py --data "$out/mnist.pt" --device cuda --no-reference --no-cuda-graphs
echo "== benchmark against the reference, 2000 iterations per run"
python3 bench/bench_training.py --data "$out/mnist.pt" --device cuda --iterations 2000
if python3 -c "import snakemake" 2>/dev/null; then
    echo "== the whole study: snakemake --cores $(nproc) all"
    python3 bench/bench_workflow.py --mnist "$MNIST_DIR" --cores "$(nproc)"
    gpus=$(nvidia-smi -L | grep -c "^GPU ")
    echo "== the whole study, 4 training jobs sharing each GPU: --resources gpu=$((4 * gpus)) --config jobs_per_gpu=4"
    python3 bench/bench_workflow.py --mnist "$MNIST_DIR" --cores "$(nproc)" -- --resources gpu=$((4 * gpus)) --config jobs_per_gpu=4
fi
rm -f "$out/mnist.pt"
