#!/usr/bin/env bash
# What only a GPU shows, in one go (about 9 minutes on one H100/H200): the card, ms/iter of the paper's MNIST
# setting in fp32, bf16 and fp16, the paper preset's 5-task MNIST RA and JTR runs (fp32; RA also in bf16 and
# fp16), and the sweep of quick-preset variants, many runs at once. Results (metrics, sample grids, logs, the
# summaries) are packed into RESULTS/experiments.tgz.
#
#     bash scripts/gpu_check.sh [RESULTS] [SECONDS]      # RESULTS default gpu-results, SECONDS default 400
set -uo pipefail
cd "$(dirname "$0")/.."
results=${1:-${OUT:-gpu-results}}
budget=${2:-400}
mkdir -p "$results"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
py=${PYTHON:-python3}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$results/card.txt"
$py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$results/card.txt"
nproc | tee -a "$results/card.txt"

# Many small runs share the GPU far better through MPS; fall back to plain contexts if it does not work.
if command -v nvidia-cuda-mps-control >/dev/null && nvidia-cuda-mps-control -d; then
  if timeout 60 $py -c "import torch; torch.zeros(1).cuda(); print('MPS ok')"; then :; else
    echo quit | nvidia-cuda-mps-control; echo "MPS off"; fi
fi | tee -a "$results/card.txt"

for mp in no bf16 fp16; do   # ms/iter alone on the card, before the runs start
  timeout 120 $py -m mergan.bench --strategies sft,ra,jtr --iters 10 --repeats 3 --mixed-precision $mp \
    2>&1 | grep -v Warning | tee "$results/bench-$mp.txt"
done

$py scripts/experiments.py gpu --out experiments --jobs 4 --device cuda --deadline "$budget" \
  > "$results/gpu.txt" 2>&1 &
$py scripts/experiments.py sweep --out experiments --jobs 10 --device cuda --deadline "$((budget - 20))" \
  > "$results/sweep.txt" 2>&1
wait
cp experiments/summary-*.txt "$results/" 2>/dev/null
tar czf "$results/experiments.tgz" --exclude='*.safetensors' --exclude='state.pt' experiments
tail -n 40 "$results"/summary-*.txt
