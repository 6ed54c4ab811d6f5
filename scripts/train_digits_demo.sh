#!/usr/bin/env bash
# Rebuild the digits demo shipped in src/wetok/demos/digits/ from scratch: scikit-learn's 1797
# handwritten digits upscaled to 32 px, a small tokenizer trained on them, then a class-conditional
# generator trained on its tokens.
#
#   bash scripts/train_digits_demo.sh              every step below, in order
#   bash scripts/train_digits_demo.sh data         only write the digit folder RUN_DIR/digits
#   bash scripts/train_digits_demo.sh tokenizer    train the tokenizer and put it into the package
#   bash scripts/train_digits_demo.sh generator    tokenize the digits, train the generator, put it into the package
#
# Every step is resumable and skipped once done: stop the script at any time (Ctrl-C or SIGTERM
# write a checkpoint first) and run the same command again. On a 2-core CPU the tokenizer takes
# about 4 minutes and the generator about 9, 14 in all (src/wetok/demos/digits/MODEL_CARD.md).
#
# Variables (defaults in brackets; relative paths are relative to the repository root):
#   RUN_DIR    the digit folder, the training runs and the token shards  [~/.cache/wetok/digits-demo]
#   WETOK_VENV the virtual environment                                    [.venv]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${WETOK_VENV:-$root/.venv}"
python="$venv/bin/python"
RUN_DIR="${RUN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wetok/digits-demo}"
DEMO_DIR="$root/src/wetok/demos/digits"
what="${1:-all}"

# One thread: the recipes' train.threads is 1, and OpenMP must not oversubscribe.
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1

say() { echo "train_digits_demo: $*" >&2; }

setup() {
  bash "$root/scripts/setup.sh" --test     # scikit-learn (the digits and their classifier) comes with the test extras
}

write_data() {
  if [ "$(find "$RUN_DIR/digits" -name '*.png' 2>/dev/null | wc -l)" -eq 1797 ]; then
    say "data: $RUN_DIR/digits already holds the 1797 digits"
    return
  fi
  say "data: writing the digits to $RUN_DIR/digits (one folder per class)"
  "$python" -c 'import sys; from wetok.demos.digits import write_digit_folder; write_digit_folder(sys.argv[1])' "$RUN_DIR/digits"
}

# Copy a run's exported model (config.json + model.safetensors) into the package, each file atomically.
ship_model() {
  local from="$1" to="$2" name
  mkdir -p "$to"
  for name in model.safetensors config.json; do
    cp "$from/$name" "$to/.$name.tmp"
    mv "$to/.$name.tmp" "$to/$name"
  done
  say "copied $from into $to"
}

train_tokenizer() {
  local run="$RUN_DIR/tokenizer"
  if [ -f "$run/model/config.json" ]; then
    say "tokenizer: $run is finished (its EMA weights are in $run/model)"
  else
    say "tokenizer: wetok train --config configs/digits-tokenizer.yaml -> $run"
    "$python" -m wetok train --config configs/digits-tokenizer.yaml --data "$RUN_DIR/digits" --output "$run" --resume auto
  fi
  ship_model "$run/model" "$DEMO_DIR/tokenizer"
  # The figures of the model card (and of tests/demos/test_digits.py): all 1797 digits, reconstructed.
  "$python" - "$DEMO_DIR/tokenizer" <<'EOF'
import sys

import numpy as np

import wetok
from wetok.demos.digits import DigitClassifier, digit_images, reconstruct_digits
from wetok.metrics import psnr

images, labels = digit_images()
model = wetok.load(sys.argv[1])
reconstructions = reconstruct_digits(model, images)
held_out = DigitClassifier(np.arange(0, len(images), 2)).score(reconstructions[1::2], labels[1::2])
print(f"train_digits_demo: tokenizer {model.config.architecture_hash()}: of the 1797 reconstructions "
      f"{DigitClassifier().score(reconstructions, labels):.4f} recognised as their digit ({held_out:.4f} of the odd-numbered "
      f"ones by a classifier of the even-numbered digits), mean PSNR {float(psnr(images, reconstructions).mean()):.2f} dB")
EOF
}

train_generator() {
  local tokens="$RUN_DIR/tokens" run="$RUN_DIR/generator"
  # 1. the digits' tokens: one view each (digits are not mirror-symmetric); resumable
  say "generator: wetok tokenize -> $tokens"
  "$python" -m wetok tokenize --ckpt "$DEMO_DIR/tokenizer" --data "$RUN_DIR/digits" --output "$tokens" --size 32 \
    --augment none --no-progress
  # 2. the generator
  if [ -f "$run/model/config.json" ]; then
    say "generator: $run is finished (its EMA weights are in $run/model)"
  else
    say "generator: wetok train-ar --config configs/ar-digits.yaml -> $run"
    "$python" -m wetok train-ar --config configs/ar-digits.yaml --data "$tokens" --output "$run" --resume auto \
      --set tokenizer.model="$DEMO_DIR/tokenizer"
  fi
  # 3. into the package, referring to the shipped tokenizer beside it (not a second copy), then the
  # model card's figures: the classifier's verdict on 100 samples of each digit, with and without guidance
  "$python" - "$run/model" "$DEMO_DIR/generator" <<'EOF'
import sys

import numpy as np

import wetok.ar
from wetok.demos.digits import CFG_SCALE, DigitClassifier, sample_digits

model = wetok.ar.load(sys.argv[1])
wetok.ar.save(model, sys.argv[2], tokenizer_source="../tokenizer")
shipped = wetok.ar.load(sys.argv[2])
judge = DigitClassifier()
for scale in (1.0, CFG_SCALE):
    images, labels = sample_digits(shipped, 100, cfg_scale=scale)
    predicted = judge.predict(images)
    per_class = " ".join(f"{np.mean(predicted[labels == c] == c):.2f}" for c in range(10))
    print(f"train_digits_demo: generator, guidance scale {scale}: {np.mean(predicted == labels):.4f} of 1000 samples "
          f"recognised as the digit asked for (per digit 0-9: {per_class})")
EOF
}

case "$what" in
  all) setup; write_data; train_tokenizer; train_generator ;;
  data) setup; write_data ;;
  tokenizer) setup; write_data; train_tokenizer ;;
  generator) setup; train_generator ;;
  *) say "unknown action '$what' (all, data, tokenizer or generator)"; exit 2 ;;
esac
