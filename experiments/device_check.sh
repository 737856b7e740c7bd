#!/usr/bin/env bash
# One command on a machine with a GPU (or TPU): the matching jax, the device-independent
# tests, then the training-step, distill-step and sampling benchmarks on that device.
#
#   bash experiments/device_check.sh [cuda12|cuda13|tpu|none]   (default: keep the installed jax if it sees an
#                                                          accelerator, else install jax[cuda12])
#
# Budget: under 8 minutes on one H100/H200. Prints the machine, then one table per
# benchmark; everything also goes to runs/device_check/log.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=runs/device_check
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1

accelerator() { python3 -c "import jax, sys; sys.exit(jax.default_backend() == 'cpu')" 2>/dev/null; }
WANT=${1:-auto}
if [ "$WANT" = auto ]; then
  accelerator && WANT=none || WANT=cuda12
fi
case "$WANT" in
  none) ;;
  tpu) python3 -m pip install -q -U "jax[tpu]" ;;
  cuda*) python3 -m pip install -q -U "jax[$WANT]" ;;
  *) echo "unknown platform $WANT"; exit 2 ;;
esac
python3 -m pip install -q -e '.[dev]'
python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
accelerator || { echo "no accelerator visible to jax; stopping"; exit 1; }

echo "== device-independent tests (on this machine's CPU, 8 fake devices, as in CI)"
timeout 150 python3 -m pytest -q -x -p no:cacheprovider tests/test_layers.py tests/test_teacher_step.py \
    tests/test_export.py -k "not ring_of_gaussians"

echo "== teacher step: fp32 and bf16, widths 64 and 128, batches 64 to 512"
python3 experiments/bench/bench_train_step.py --widths 64 128 --batches 64 256 512 --dtypes float32 bfloat16 --steps 20

echo "== distill step vs teacher step"
python3 experiments/bench/bench_distill_step.py --steps 20

echo "== sampling: the study's teacher and students at 2 steps of training (speed does not depend on the weights)"
W="$OUT/workdirs"
rm -rf "$W" && mkdir -p "$W"
python3 -c "import numpy as np; np.savez('$W/images.npz', train_images=np.random.default_rng(0).integers(0, 256, (512, 28, 28), np.uint8))"
SHORT=(--quiet --set data.source=npz --set "data.path='$W/images.npz'" --set train.steps=2 --set train.ckpt_every=2
       --set train.sample_every=2 --set train.log_every=1)
python3 -m gandistill_jax.cli train-teacher --config experiments/configs/fashion_mnist_teacher.py \
    --workdir "$W/teacher" "${SHORT[@]}"
for student in "24 16" "8 12"; do
  set -- $student
  python3 -m gandistill_jax.cli distill --config experiments/configs/fashion_mnist_distill.py --teacher "$W/teacher" \
      --workdir "$W/w$1r$2" "${SHORT[@]}" --set model.g_width=$1 --set model.proj_rank=$2
done
python3 experiments/bench/bench_sampling.py "$W/teacher" "$W/w24r16" "$W/w8r12" --repeats 20
