#!/usr/bin/env bash
# What only a GPU shows, in one call of at most 9 minutes on one H100/H200:
#   1. the card;
#   2. the captured training step against the eager one (tests/test_graphs.py -m cuda: the same losses and
#      weights over two tasks of 150 updates, four strategy/game pairs);
#   3. ms/iter of the paper's MNIST setting (width 32, batch 64, task 4), eager and captured, SFT, RA and JTR;
#   4. the paper's recipe (--preset paper) on the official MNIST: every strategy on 5 tasks, then RA and JTR on
#      10 tasks, many runs at once on the card (MPS), each evaluated (both evaluators, variety), all stopped
#      after SECONDS; the metrics, grids and final task files packed into RESULTS (at most 8 files, 16 MB each).
#
#     bash scripts/gpu_check.sh [RESULTS] [SECONDS]      # RESULTS default $OUT or gpu-results; SECONDS default 330
#     DRY=1 bash scripts/gpu_check.sh /tmp/dry 120       # the same steps at toy sizes on the CPU, before a lease
#
# Packages the card's image lacks travel as wheels in .whl/ (prdc for the variety measures): see the README.
set -uo pipefail
cd "$(dirname "$0")/.."
results=${1:-${OUT:-gpu-results}}
budget=${2:-330}
mkdir -p "$results"
results=$(cd "$results" && pwd)   # absolute: the packing below runs inside paper-runs/
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
py=${PYTHON:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  $py -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
if [ -n "${DRY:-}" ]; then   # toy sizes, CPU: checks the script itself
  device=cpu; jobs=2; tiny=(--iters 3 --dim 4 --batch-size 8 --save-every 2)
  bench=(--dim 4 --batch-size 8 --iters 2 --repeats 1 --warmup 1 --cpu); evals=64
else
  device=cuda; jobs=8; tiny=(); bench=(--iters 20 --repeats 3 --cuda-graphs); evals=6400
fi

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
  nproc; } | tee "$results/card.txt"

timeout 150 $py -m pytest -q -p no:cacheprovider tests/test_graphs.py -m cuda 2>&1 | tail -n 15 \
  | tee "$results/graphs-test.txt"

timeout 150 $py -m mergan.bench --strategies sft,ra,jtr "${bench[@]}" 2>&1 | grep -v Warning \
  | tee "$results/bench.txt"

# Many small runs share the GPU far better through MPS; fall back to plain contexts if it does not work.
if [ "$device" = cuda ] && command -v nvidia-cuda-mps-control >/dev/null && nvidia-cuda-mps-control -d; then
  timeout 60 $py -c "import torch; torch.zeros(1).cuda(); print('MPS on')" || { echo quit | nvidia-cuda-mps-control; }
fi | tee -a "$results/card.txt"

$py scripts/experiments.py paper --out paper-runs --jobs "$jobs" --device "$device" --deadline "$budget" \
  --eval-samples "$evals" --extra "${tiny[*]}" 2>&1 | tee "$results/paper.txt" | tail -n 20

# What comes back: every run's metrics and grids, and the final task file of each (RA's and JTR's are shipped).
( cd paper-runs && tar czf "$results/paper-t5.tgz" logs summary-paper.txt \
    $(ls -d paper-*-t5 2>/dev/null | while read r; do
        echo "$r/config.json" "$r/metrics.json" "$r/forgetting_grid.png" "$r/samples"
        ls "$r"/task_*.safetensors 2>/dev/null | tail -n 1; done) 2>/dev/null
  tar czf "$results/paper-t10.tgz" \
    $(ls -d paper-*-t10 2>/dev/null | while read r; do
        echo "$r/config.json" "$r/metrics.json" "$r/forgetting_grid.png" "$r/samples"
        ls "$r"/task_*.safetensors 2>/dev/null | tail -n 1; done) 2>/dev/null )
ls -la "$results"
