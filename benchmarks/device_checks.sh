#!/usr/bin/env bash
# Every GPU check as one prepared run on a lent NVIDIA machine. Its steps' timeouts add up to
# 8.7 min, inside one 10-minute device command; how long it takes on a GPU is not measured yet. Never run in CI.
#
#   bash benchmarks/device_checks.sh --prepare     # here, once per checkout: wheels the device image lacks -> .whl/
#   device run: command "bash benchmarks/device_checks.sh", carry [".whl"], timeout_s 600
#
# The device image has python3 with a CUDA torch, numpy, scipy, numba, h5py, matplotlib, scikit-image, tqdm and
# pytest, but not scikit-fem or tomli-w; --prepare downloads those two (pure-Python wheels) into .whl/, which
# .git/info/exclude keeps out of git. hybrid itself runs from the working tree (PYTHONPATH), not installed.
#
# What it runs, each step bounded by `timeout` and logged to $OUT (or out/device when OUT is unset):
#   1. the CUDA-parametrised tests: backend equivalence of the ATG and grain-growth kernels (1e-10 over 100 steps),
#      the elastic ensemble and monitor on cuda against the CPU, the tiled jump inference on cuda against the CPU,
#      every provider's torch-in/torch-out on cuda, the torch example loop on the GPU against the CPU, the
#      shipped ATG case with its monitor on the torch backend on cuda against the numpy run;
#   2. bench_elastic.py --device cuda: the ensemble per call on the GPU against the FEM on the CPU (#3 per-call
#      target; the FEM has no GPU path);
#   3. bench_graingrowth.py --device cuda: the torch DNS step on the GPU against a copy of the same bytes there (#4
#      bandwidth target on the GPU);
#   4. bench_surrogate.py --backend torch --device cuda: DNS vs jump surrogate per window, both on the GPU (#4
#      hybrid target, same device).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl scikit-fem==12.0.2 tomli-w==1.2.0
    exit
fi

out=${OUT:-out/device}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 NUMBA_THREADING_LAYER=workqueue
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH="/tmp/site:$PWD"
else
    export PYTHONPATH="$PWD"
fi
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    python3 -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), 'numpy', numpy.__version__)"
} 2>&1 | tee "$out/machine.txt"

status=0
run() { # NAME SECONDS COMMAND...: one step, its output in $out/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*"
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc"
    [ "$rc" = 0 ] || status=1
}

run tests_cuda 150 python3 -m pytest -q -p no:cacheprovider -o addopts="" -k "cuda or gpu" \
    tests/solvers/test_atg_kernels.py tests/solvers/test_graingrowth_kernels.py \
    tests/couplers/test_nn_elastic.py tests/couplers/test_surrogate.py tests/test_provider_inputs.py \
    tests/test_examples.py tests/test_gpu_path.py
run bench_elastic 120 python3 benchmarks/bench_elastic.py --points 100 512 1024 --calls 20 --run-end 0 --device cuda
run bench_graingrowth 110 python3 benchmarks/bench_graingrowth.py --size 512 --repeat 20 --device cuda
run bench_surrogate 140 python3 benchmarks/bench_surrogate.py --size 512 --windows 3 --backend torch --device cuda
exit $status
