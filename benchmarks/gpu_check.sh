#!/usr/bin/env bash
# The `paper` preset on a GPU, briefly (issue 17's GPU check): the phantom at clinical in-plane
# size, every stage of `diff4mmlits run` with each training stage cut to a few hundred steps, then
# `predict` on one unregistered four-phase case and one short DDP training under torchrun. It checks
# the CUDA paths (float16 + gradient scaling in the inpainter, bfloat16 autocast elsewhere, NCCL) and
# reports step times (the log's progress lines) and each stage's peak GPU memory ("done in ... s,
# peak GPU memory ... GiB").
#
#   PYTHONPATH=src bash benchmarks/gpu_check.sh            # writes $OUT (default /tmp/gpu_check)
#   PRESET=smoke SIZE=32 STEPS=4 DEVICE=cpu bash benchmarks/gpu_check.sh   # a dry run of the script
#
# Knobs (environment): SIZE (in-plane voxels, 256), CASES (4: one round of registration and
# phantom processes), STEPS (training steps per stage, 200: the float16 R1 overflow showed after ~150), DEVICE (cuda), PRESET (paper), OUT (folder for the log), WORK (scratch, default /tmp/gpu_check_work:
# not under OUT, which may be copied back whole).
set -uo pipefail
SIZE=${SIZE:-256}
CASES=${CASES:-4}
STEPS=${STEPS:-200}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/gpu_check}
PRESET=${PRESET:-paper}
WORK=${WORK:-/tmp/gpu_check_work}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 DIFF4MMLITS_PROGRESS=lines
mkdir -p "$OUT" "$WORK"
D=("$PY" -m diff4mmlits.cli)

section() { echo; echo "=== $* ($(date +%T))"; }

section environment
"$PY" - <<'EOF'
import torch
print("torch", torch.__version__, "| CUDA", torch.cuda.is_available(),
      "| device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-",
      "| bf16", torch.cuda.is_available() and torch.cuda.is_bf16_supported())
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

section "phantom: $CASES cases, ${SIZE}^2 in plane"
"${D[@]}" phantom "$WORK/data" --cases "$CASES" --size "$SIZE" || exit 1

SETS=(--set "inpaint.steps=$STEPS" --set "inpaint.log_every_steps=$((STEPS / 6 + 1))"
      --set "autoencoder.steps=$STEPS" --set "autoencoder.adversarial_start_step=$((STEPS / 3))"
      --set "diffusion.steps=$STEPS"
      --set "synthesize.per_case=1" --set "synthesize.ddim_steps=50"
      --set "segment.epochs=2" --set "segment.steps_per_epoch=$((STEPS / 2))" --set "segment.synthetic_pool=4")

section "run --preset $PRESET (every stage, $STEPS training steps each)"
"${D[@]}" run "$WORK/data" --run "$WORK/run" --preset "$PRESET" --device "$DEVICE" "${SETS[@]}"
run_status=$?
echo "run exit status: $run_status"

if [ "$run_status" = 0 ]; then
  case=$(ls "$WORK/data" | grep -v '^_' | grep -v '\.' | head -1)
  section "predict one unregistered four-phase case ($case)"
  timer=(); [ -x /usr/bin/time ] && timer=(/usr/bin/time -v)
  "${timer[@]}" "${D[@]}" predict "$WORK/data/$case" "$WORK/predicted/$case.nii.gz" \
    --model "$WORK/run/models/segmenter" --device "$DEVICE" 2>&1 | grep -vE '^\s+(Average|Exit|File|Major|Minor|Page|Percent|Signals|Socket|Swaps|System|User|Voluntary|Involuntary)'

  if [ "$DEVICE" = cuda ]; then
    section "train under torchrun (DDP, NCCL), one short epoch"
    torchrun --standalone --nproc_per_node 1 -m diff4mmlits.cli -- train --run "$WORK/run" --device cuda \
      --set segment.epochs=1 --set "segment.steps_per_epoch=$((STEPS / 6 + 1))" --force
    echo "torchrun exit status: $?"
  fi
fi

