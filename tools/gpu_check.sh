#!/usr/bin/env bash
# One prepared GPU run (issues 3 and 6): full-width MgNet Pi1 and ResNet-18 on the CIFAR-10 10k subset, a
# few minutes each, then the training and multigrid benchmarks at GPU sizes. Prints everything it measures.
# Usage (from the repository root, data beside it as ../shared/data or in DATA):
#   DATA=../shared/data EPOCHS=5 bash tools/gpu_check.sh
set -euo pipefail
DATA=${DATA:-../shared/data}
EPOCHS=${EPOCHS:-5}
OUT=${OUT:-runs/gpu}
python -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"
pip install -q -e . --no-deps 2>/dev/null || true
for spec in specs/mgnet.mg specs/table2/resnet18.mg; do
  name=$(basename "$spec" .mg)
  /usr/bin/time -f "$name wall %e s" python -m mgdsl.cli compile "$spec" --train "$DATA/cifar10-train-10k.npz" \
    --test "$DATA/cifar10-test-2k.npz" --epochs "$EPOCHS" --device cuda --amp --channels-last --out "$OUT/$name"
done
python tools/bench_train.py --device cuda --steps 20
python tools/bench_solve.py --device cuda --sizes 1025 2049 4097
