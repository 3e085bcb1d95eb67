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
# not under OUT, which may be copied back whole; emptied first). The log goes to $OUT/gpu_check.log,
# internal errors' tracebacks to $OUT/crash-logs/. The whole script at the defaults may take longer
# than a 10-minute command limit: lower STEPS or SIZE there.
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
rm -rf "$WORK"  # a fresh phantom and run folder each time: every stage runs again
mkdir -p "$OUT" "$WORK"
exec > >(tee "$OUT/gpu_check.log") 2>&1  # the log comes back with $OUT
trap 'cp -r /tmp/diff4mmlits-logs "$OUT/crash-logs" 2>/dev/null; true' EXIT  # tracebacks of internal errors
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

  echo "predict exit status: ${PIPESTATUS[0]}"

  # DDP needs two processes: NCCL with one GPU each where there are two or more GPUs, else gloo on
  # the CPU (the wrapping, the gradient and metric all-reduces and the rank-0 writes; not NCCL)
  gpus=0; [ "$DEVICE" = cuda ] && gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
  if [ "$gpus" -ge 2 ]; then ddp_device=cuda; nproc=$gpus; else ddp_device=cpu; nproc=2; fi
  section "train under torch.distributed.run ($nproc processes, $ddp_device), one short epoch"
  "$PY" -m torch.distributed.run --standalone --nproc_per_node "$nproc" -m diff4mmlits.cli -- train \
    --run "$WORK/run" --device "$ddp_device" --set segment.epochs=1 --set "segment.steps_per_epoch=$((STEPS / 6 + 1))"
  echo "distributed train exit status: $?"
fi

