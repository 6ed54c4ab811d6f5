#!/usr/bin/env bash
# Rebuild the default model's data and train it from scratch with the recipe of the model shipped
# in src/wetok/default_model/ (docs/default-model.md explains each phase).
#
#   bash scripts/train_default_model.sh            data, then the three training phases
#   bash scripts/train_default_model.sh data       only prepare DATA_DIR
#   bash scripts/train_default_model.sh train      only the training phases (DATA_DIR must exist)
#   bash scripts/train_default_model.sh ship       put RUN_DIR's latest weights into the package
#                                                  and rewrite its model card (after training)
#
# Every phase is resumable: stop the script at any time (Ctrl-C or SIGTERM write a checkpoint
# first), run the same command again, and it continues where the run stopped; finished phases
# are skipped. On a 2-core CPU the training takes about 13 hours (docs/default-model.md).
#
# Variables (defaults in brackets; relative paths are relative to the repository root):
#   DATA_DIR   prepared images: DATA_DIR/train and DATA_DIR/heldout   [runs/default-model-data]
#   RUN_DIR    the training run (checkpoints, logs, model/)            [runs/default-model]
#   WETOK_VENV the virtual environment                                 [.venv]
#   L1_END, MSE_END, END   the steps at which the phases end          [13648, 17536, 77508]
#   PROCESSES  processes of the last phase (one per core)              [2]
#   WALL_TIME, HISTORY     the training time and phases the model card states (ship)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${WETOK_VENV:-$root/.venv}"
python="$venv/bin/python"
DATA_DIR="${DATA_DIR:-runs/default-model-data}"
RUN_DIR="${RUN_DIR:-runs/default-model}"
L1_END="${L1_END:-13648}"
MSE_END="${MSE_END:-17536}"
END="${END:-77508}"
PROCESSES="${PROCESSES:-2}"
what="${1:-all}"

# One thread per process: the recipe's train.threads is 1, and OpenMP must not oversubscribe.
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1

say() { echo "train_default_model: $*" >&2; }

# The step of RUN_DIR's newest checkpoint (0 when there is none).
latest_step() {
  local newest
  newest="$(ls "$RUN_DIR/checkpoints" 2>/dev/null | grep -E '^step-[0-9]+\.pt$' | sort | tail -n 1 || true)"
  if [ -z "$newest" ]; then
    echo 0
  else
    newest="${newest#step-}"
    echo "$((10#${newest%.pt}))"
  fi
}

prepare_data() {
  if [ -n "$(ls -A "$DATA_DIR/train" 2>/dev/null)" ] && [ -n "$(ls -A "$DATA_DIR/heldout" 2>/dev/null)" ]; then
    say "data: $DATA_DIR already holds train/ and heldout/"
    return
  fi
  bash "$root/scripts/setup.sh" --test     # scikit-image comes with the test extras
  if ! "$python" -c "import sklearn" 2>/dev/null; then
    say "data: installing scikit-learn (its sample images china.jpg and flower.jpg are held out)"
    "$python" -m pip --disable-pip-version-check -q install scikit-learn
  fi
  # Without --wallpapers the script downloads and unpacks plasma-workspace-wallpapers itself
  # (apt-get download, dpkg -x) in a temporary folder.
  "$python" scripts/prepare_default_data.py --out "$DATA_DIR"
}

# wetok train on one process; the remaining arguments are passed on.
train_one() { "$python" -m wetok train --data "$DATA_DIR/train" --output "$RUN_DIR" "$@"; }

train_phases() {
  if [ -z "$(ls -A "$DATA_DIR/train" 2>/dev/null)" ]; then
    say "no training images in $DATA_DIR/train: run '$0 data' first"
    exit 2
  fi
  local step
  step="$(latest_step)"

  # Phase 1: L1 reconstruction, the config as it is, one process.
  if [ "$step" -lt "$L1_END" ]; then
    say "phase 1 (L1, one process): step $step -> $L1_END"
    if [ "$step" -eq 0 ] && [ ! -f "$RUN_DIR/config.yaml" ]; then
      train_one --config configs/default-model.yaml --steps "$L1_END" --set "eval.folder=$DATA_DIR/heldout"
    else
      train_one --resume --steps "$L1_END"
    fi
    step="$(latest_step)"
  fi

  # Phase 2: 100 x mean squared error in place of L1, same constant learning rate, one process.
  if [ "$step" -lt "$MSE_END" ]; then
    say "phase 2 (100 x MSE, one process): step $step -> $MSE_END"
    train_one --resume --steps "$MSE_END" --set loss.l1_weight=0 --set loss.l2_weight=100
    step="$(latest_step)"
  fi

  # Phase 3: the same objective as PROCESSES processes under torchrun (batch 4 each).
  if [ "$step" -lt "$END" ]; then
    say "phase 3 (100 x MSE, $PROCESSES processes): step $step -> $END"
    "$venv/bin/torchrun" --standalone --nproc_per_node="$PROCESSES" -m wetok train \
      --data "$DATA_DIR/train" --output "$RUN_DIR" --resume --steps "$END" \
      --set loss.l1_weight=0 --set loss.l2_weight=100
    step="$(latest_step)"
  fi
  say "training done at step $step; EMA weights in $RUN_DIR/model (wetok.load reads it)"
  say "held-out quality: $python -m wetok evaluate --ckpt $RUN_DIR/model --data $DATA_DIR/heldout --metrics psnr,ssim,usage --baselines jpeg,webp --per-image --output $RUN_DIR/heldout.json"
}

ship() {
  "$python" scripts/ship_default_model.py --run "$RUN_DIR" --heldout "$DATA_DIR/heldout" \
    --wall-time "${WALL_TIME:-about 13 h on a 2-core CPU}" \
    --history "${HISTORY:-steps 0-$L1_END with \`configs/default-model.yaml\` as it is (L1; lr 4e-4, constant after a 500-step warm-up; one process); from step $L1_END to the end at the same constant lr with 100 x MSE in place of L1 (\`--set loss.l1_weight=0 --set loss.l2_weight=100\`; one process to step $MSE_END, then $PROCESSES processes under torchrun with batch 4 each); no learning-rate decay. \`scripts/train_default_model.sh\` runs these phases; docs/default-model.md has the comparisons that chose each change.}"
}

case "$what" in
  all) prepare_data; train_phases ;;
  data) prepare_data ;;
  train) train_phases ;;
  ship) ship ;;
  *) say "unknown action '$what' (all, data, train or ship)"; exit 2 ;;
esac
