#!/usr/bin/env bash
# Issue #20: how far does the shipped (16K-trained) model reach past its training length with RoPE scaling alone, no
# training? Copies MODEL (default models/embedded) into $WORK once per variant, rewrites only config.json's rope_scaling
# and max_position_embeddings, and runs the accuracy harness with full attention on each copy, same samples (seed).
#   VARIANTS  space-separated NAME=SPEC, SPEC "none" or "yarn:FACTOR:ORIGINAL" or "linear:FACTOR" or "dynamic:FACTOR"
#             (default: none yarn:2:16384 yarn:4:16384)
#   TASKS, LENGTHS, SAMPLES, SEED  passed to `apb eval ruler` (defaults: the #20 bar's tasks at 16K-64K, 8 samples)
# Writes $OUT/rope/NAME.json (the harness's JSON), NAME.md and NAME.log, then packs them into $OUT/rope.tgz (the device
# tool brings back at most 8 files; TAR=0 keeps the folder instead), and a table per variant into $SUMMARY (or stdout).
source "$(dirname "$0")/env.sh"
MODEL=${MODEL:-models/embedded}
WORK=${WORK:-/tmp/apb-rope}
VARIANTS=${VARIANTS:-"none=none yarn2=yarn:2:16384 yarn4=yarn:4:16384"}
TASKS=${TASKS:-niah_single_1,niah_multikey_1,vt}
LENGTHS=${LENGTHS:-16k,32k,64k}
SAMPLES=${SAMPLES:-8}
SEED=${SEED:-0}
SUMMARY=${SUMMARY:-/dev/stdout}
require_apb
mkdir -p "$OUT/rope" "$WORK"

for v in $VARIANTS; do
  name=${v%%=*}; spec=${v#*=}
  dir=$WORK/$name
  rm -rf "$dir"; cp -r "$MODEL" "$dir"
  # max_position_embeddings goes to 256K so that any length asked fits with its answer whatever the variant: it is only
  # the harness's length check here (the engine's YaRN takes the factor as given, as transformers 5 does).
  python3 - "$dir/config.json" "$spec" <<'EOF' || { echo "bad variant $v"; exit 2; }
import json, sys
path, spec = sys.argv[1], sys.argv[2]
c = json.load(open(path))
c["max_position_embeddings"] = 262144
kind, *a = spec.split(":")
if kind == "none":
    c["rope_scaling"] = None
elif kind == "yarn":
    c["rope_scaling"] = {"rope_type": "yarn", "factor": float(a[0]), "original_max_position_embeddings": int(a[1])}
elif kind in ("linear", "dynamic"):
    c["rope_scaling"] = {"rope_type": kind, "factor": float(a[0])}
else:
    raise SystemExit(f"unknown rope spec {spec}")
json.dump(c, open(path, "w"), indent=2)
EOF
  step "rope $name ($spec): $TASKS at $LENGTHS, $SAMPLES samples, seed $SEED"
  "$APB" eval ruler --model "$dir" --device cuda --tasks "$TASKS" --length "$LENGTHS" --samples "$SAMPLES" --seed "$SEED" \
    --strategies full --json "$OUT/rope/$name.json" > "$OUT/rope/$name.md" 2> "$OUT/rope/$name.log"
  rc=$?
  { echo "### rope $name ($spec), rc $rc"; cat "$OUT/rope/$name.md"; echo; } >> "$SUMMARY"
  [ $rc -eq 0 ] || tail -n 5 "$OUT/rope/$name.log"
done
if [ "${TAR:-1}" = 1 ]; then
  tar czf "$OUT/rope.tgz" -C "$OUT" rope && rm -rf "$OUT/rope"
fi
