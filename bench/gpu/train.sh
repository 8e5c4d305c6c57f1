#!/usr/bin/env bash
# Warm-start training of the embedded model on the GPU machine (`bash bench/gpu/train.sh` from the repository root, with
# the Native AOT binary published beforehand into publish/linux-x64: it makes every training sample). Two steps:
#   1. tools/train_small_model.py --smoke (bounded by `timeout $SMOKE_TIMEOUT`, default 90 s): every code path in well
#      under a minute (checkpoint load, sample generation, steps at every length up to --max-len, selection
#      evaluation, best-weights save, report evaluation, retaining heads, pack). A failure stops here, before the real
#      run spends its minutes.
#   2. the real run: --init models/embedded, SECONDS_BUDGET seconds (default 480; the script keeps ~85 s of it for the
#      end: evaluation, heads, saving), bounded by timeout at SECONDS_BUDGET + 60.
# Only $OUT/train is written under $OUT (the caller may use the rest of $OUT): smoke.log, train.log, metrics.json and
# model.tar.part-aa, -ab, ... (2-3 parts of <= 15 MiB): at most 6 files, under the machine's limit of 8 files of 16 MiB.
# Restore here: cat model.tar.part-* | tar x   (-> model/, the HF checkpoint; metrics.json "pack" has its sha256).
# Samples, data and the unpacked checkpoints stay in $WORK (default /tmp/apb-train), outside $OUT.
# To continue from an earlier run's weights, copy them over models/embedded in the working tree for that call only
# (git checkout models/embedded afterwards): the device tool's 64 MiB for tree and carry leave no room for a second
# 30 MB checkpoint beside the shipped one (bench/results/train64k-20261203, run 2).
# Environment: APB (binary), OUT, SECONDS_BUDGET, INIT (default models/embedded), WORK, EXTRA (more script flags for the
# real run, e.g. EXTRA="--task-weights vt=3 --lr 7e-4"), LEN_FLAGS (length flags for the smoke run and the real run
# alike, so the smoke steps at the longest length too; for a 64K model (issue #20):
# LEN_FLAGS="--max-len 65536 --max-position 65536 --sel-lengths 4096,16384,65536"). CUDA_VISIBLE_DEVICES is used as the
# caller set it (one GPU). STEPS (default "smoke train"): "smoke" alone checks the flags in one call, "train" alone runs
# the real run without its smoke, for a call whose time the smoke would take (after a smoke passed with the same flags).
source "$(dirname "$0")/env.sh"

SECONDS_BUDGET=${SECONDS_BUDGET:-480}
INIT=${INIT:-models/embedded}
WORK=${WORK:-/tmp/apb-train}
EXTRA=${EXTRA:-}
LEN_FLAGS=${LEN_FLAGS:-}
SMOKE_TIMEOUT=${SMOKE_TIMEOUT:-90}   # more for a 64K smoke: its samples take longer to make
STEPS=${STEPS:-smoke train}
for s in $STEPS; do
  [[ $s == smoke || $s == train ]] || { echo "STEPS=\"$STEPS\": each step is smoke or train"; exit 2; }
done
DEST="$OUT/train"
mkdir -p "$DEST" "$WORK"
rm -rf "$WORK/smoke" "$WORK/smoke-pack" "$WORK/smoke-restore" "$WORK/run"
rm -f "$DEST"/model.tar.part-* "$DEST/metrics.json" "$DEST/smoke.log" "$DEST/train.log"
T_START=$(date +%s)

unpack_binaries apb:publish/linux-x64/apb   # .gpu/apb.xz, when the binary travelled compressed
require_apb
for f in config.json model.safetensors tokenizer.json; do
  [ -f "$INIT/$f" ] || { echo "no $INIT/$f: INIT must be a HF checkpoint folder"; exit 2; }
done

echo "== environment (CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset})"
timeout 60 python3 -c 'import torch, transformers, tokenizers, safetensors, numpy
print("torch", torch.__version__, "transformers", transformers.__version__, "tokenizers", tokenizers.__version__,
      "numpy", numpy.__version__, "| cuda", torch.cuda.is_available(), torch.cuda.device_count(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")' 2>&1 | tee "$DEST/smoke.log"
nproc

if [[ " $STEPS " == *" smoke "* ]]; then
  echo "== smoke (timeout $SMOKE_TIMEOUT s) $LEN_FLAGS"
  timeout -k 10 "$SMOKE_TIMEOUT" python3 tools/train_small_model.py --apb "$APB" --init "$INIT" --out "$WORK/smoke" \
    --pack "$WORK/smoke-pack" --smoke --seconds 60 $LEN_FLAGS >> "$DEST/smoke.log" 2>&1
  rc=$?
  tail -n 25 "$DEST/smoke.log"
  if [ $rc -ne 0 ]; then
    [ $rc -eq 124 ] && echo "smoke TIMED OUT"
    echo "smoke FAILED (rc=$rc): not starting the real run; full log in $DEST/smoke.log"
    exit 1
  fi
  # The pack must come apart into a checkpoint, as it will on the other side.
  mkdir -p "$WORK/smoke-restore"
  if ! (cat "$WORK"/smoke-pack/model.tar.part-* | tar x -C "$WORK/smoke-restore" && \
        [ -s "$WORK/smoke-restore/model/model.safetensors" ] && [ -s "$WORK/smoke-restore/model/config.json" ] && \
        [ -s "$WORK/smoke-restore/model/tokenizer.json" ] && [ -s "$WORK/smoke-restore/model/retaining_heads.safetensors" ]); then
    echo "smoke FAILED: the pack in $WORK/smoke-pack does not restore to a checkpoint" | tee -a "$DEST/smoke.log"
    exit 1
  fi
  echo "smoke passed in $(( $(date +%s) - T_START )) s" | tee -a "$DEST/smoke.log"
fi
[[ " $STEPS " == *" train "* ]] || exit 0

echo "== train ($SECONDS_BUDGET s, timeout $((SECONDS_BUDGET + 60)) s) $LEN_FLAGS $EXTRA"
set -o pipefail
# shellcheck disable=SC2086  # EXTRA is a list of flags
timeout -k 10 $((SECONDS_BUDGET + 60)) python3 tools/train_small_model.py --apb "$APB" --init "$INIT" --out "$WORK/run" \
  --pack "$DEST" --seconds "$SECONDS_BUDGET" $LEN_FLAGS $EXTRA 2>&1 | tee "$DEST/train.log"
rc=${PIPESTATUS[0]}
set +o pipefail
[ $rc -eq 124 ] && echo "train TIMED OUT (the pack written after training, if any, is still there)" | tee -a "$DEST/train.log"

echo "== result (rc=$rc, $(( $(date +%s) - T_START )) s in all)"
ls -l "$DEST"
if ls "$DEST"/model.tar.part-* >/dev/null 2>&1; then
  sum=$(cat "$DEST"/model.tar.part-* | sha256sum | cut -d' ' -f1)
  want=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["pack"]["sha256"])' "$DEST/metrics.json" 2>/dev/null)
  echo "pack sha256 $sum (metrics.json: ${want:-none}) $([ "$sum" = "$want" ] && echo OK || echo MISMATCH)"
  cat "$DEST"/model.tar.part-* | tar t
fi
# (the select and eval lines are in train.log already: tools/train_small_model.py logs them)
python3 - "$DEST/metrics.json" <<'EOF' 2>/dev/null
import json, sys
m = json.load(open(sys.argv[1]))
print("steps", m.get("steps"), "final length", m.get("final_length"), "best", m.get("best"))
EOF
n=$(find "$DEST" -type f | wc -l)
[ "$n" -le 8 ] || echo "WARNING: $n files under $DEST: only 8 come back"
exit $rc
