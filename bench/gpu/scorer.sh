#!/usr/bin/env bash
# RULER accuracy of each APB scorer against full attention on one GPU, the tables of the scorer issue (#24)
# (`bash bench/gpu/scorer.sh` from the repository root on the GPU machine, the apb binary published beforehand):
# `apb eval ruler`, the 4 APB ranks in-process on that GPU. Every table is seed 0 (a sample depends only on the seed,
# task, length and index), so the rows of one length are the same samples, and the first 40 at 16K are those of
# bench/results/accuracy-20261128/run4-16k-40* (whose "apb x4" column is the query-only scorer of that binary).
#   defaults-LONG    full and apb with no --scorer (auto: the retaining heads when the model folder ships them, as
#                    models/embedded does), all tasks at LONG (16k)
#   query-LONG       apb --scorer query (the training-free scorer with the novelty term: a model without heads) at LONG
#   defaults-SHORT   as defaults-LONG at SHORT (4k)
#   query-only-LONG  apb --scorer query-only (the query term alone, the previous default) at LONG: the comparison
#   query-SHORT      as query-LONG at SHORT
# Bars (#24): defaults within 2 points of full on the mean and within 5 on every task but cwe, at 4K and 16K; the
# query-aware scorer at 16K with vt >= 90 (l_p at its default, n/64). The last lines print each bar as met or not.
# Environment: MODEL (models/embedded), SAMPLES (20 per task), RANKS (4), TASKS (all), SHORT (4k), LONG (16k),
# DEVICE (cuda; cpu runs the same tables on the host, to try the script on a small slice), STEPS (a comma list of the
# tables above by name, e.g. defaults-16k,query-16k; default all), BUDGET (seconds for all tables, 540: each table's
# timeout is what is left of it, and a table that would start with less than 20 s left is skipped, so the script ends
# inside one 600 s device call). Writes $SCORER_DIR (default /tmp/apb-scorer): NAME.json and NAME.md per table, scorer.log
# (stderr, timings), packed into $OUT/scorer.tar.gz at the end (the device tool brings back at most 8 files).
# Runtime on one H200 with the defaults: about 4 minutes (estimated from bench/results/accuracy-20261128, where 440
# samples at 16K took full 23 s and apb x4 78 s; the first call on a fresh machine also compiles the kernels).
source "$(dirname "$0")/env.sh"
require_apb

MODEL=${MODEL:-models/embedded}
SAMPLES=${SAMPLES:-20}
RANKS=${RANKS:-4}
TASKS=${TASKS:-all}
SHORT=${SHORT:-4k}
LONG=${LONG:-16k}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-defaults-$LONG,query-$LONG,defaults-$SHORT,query-only-$LONG,query-$SHORT}
BUDGET=${BUDGET:-540}
DEST="${SCORER_DIR:-/tmp/apb-scorer}"
mkdir -p "$DEST"
LOG="$DEST/scorer.log"
: >"$LOG"
status=0
[ -f "$MODEL/config.json" ] || { echo "no $MODEL/config.json: MODEL must be a HF checkpoint folder"; exit 2; }
[ -f "$MODEL/retaining_heads.safetensors" ] ||
  echo "note: $MODEL has no retaining_heads.safetensors, so the defaults run the query-aware scorer" | tee -a "$LOG"
deadline=$(( t0 + BUDGET ))

# table NAME LENGTH FLAGS...: `apb eval ruler` over TASKS at LENGTH with FLAGS, bounded by what is left of BUDGET;
# writes $DEST/NAME.json and NAME.md (the table, also printed); stderr and "rc=... in N s" go to $LOG. A failure or a
# timeout sets status=1. Skipped unless STEPS names it.
table() {
  local name=$1 length=$2 t rc left
  shift 2
  [[ ",$STEPS," == *",$name,"* ]] || return 0
  left=$(( deadline - $(date +%s) ))
  if [ "$left" -lt 20 ]; then step "$name: skipped, $left s of BUDGET left"; status=1; return 0; fi
  step "$name: $length, $SAMPLES samples per task, $* (at most $left s)"
  t=$(date +%s)
  timeout "$left" "$APB" eval ruler --model "$MODEL" --device "$DEVICE" --tasks "$TASKS" --length "$length" \
    --samples "$SAMPLES" --ranks "$RANKS" "$@" --json "$DEST/$name.json" >"$DEST/$name.md" 2>>"$LOG"
  rc=$?
  echo "rc=$rc in $(( $(date +%s) - t )) s$([ $rc -eq 124 ] && echo ' (timed out: BUDGET)')" | tee -a "$LOG"
  [ $rc -eq 0 ] || status=1
  cat "$DEST/$name.md"
}

table "defaults-$LONG" "$LONG" --strategies full,apb
table "query-$LONG" "$LONG" --strategies apb --scorer query
table "defaults-$SHORT" "$SHORT" --strategies full,apb
table "query-only-$LONG" "$LONG" --strategies apb --scorer query-only
table "query-$SHORT" "$SHORT" --strategies apb --scorer query

# The bars, from the JSON files that exist (full's accuracy comes from the defaults table of the same length).
step "bars"
python3 - "$DEST" "$SHORT" "$LONG" <<'EOF' || status=1
import json, os, sys
dest, short, long_ = sys.argv[1:]
def rows(name):
    p = os.path.join(dest, name + ".json")
    if not os.path.exists(p): return None
    out = {}
    for r in json.load(open(p))["results"]:
        out.setdefault(r["strategy"], {})[r["task"]] = 100 * r["accuracy"]
    return out
def mean(d): return sum(d.values()) / len(d)
for length in (short, long_):
    d = rows("defaults-" + length)
    if not d or "full" not in d or "apb" not in d:
        print(f"defaults at {length}: no table"); continue
    full, apb = d["full"], d["apb"]
    gap = mean(full) - mean(apb)
    worst = max(((full[t] - apb[t], t) for t in full if t != "cwe"), default=(0.0, "-"))
    print(f"defaults at {length}: full {mean(full):.1f}, apb {mean(apb):.1f} (mean {gap:+.1f} under full: "
          f"{'met' if gap <= 2 else 'NOT met'}, bar 2); worst task but cwe {worst[1]} {worst[0]:+.1f} under full: "
          f"{'met' if worst[0] <= 5 else 'NOT met'}, bar 5")
for name in ("query-" + long_, "query-only-" + long_):
    d = rows(name)
    if not d or "apb" not in d or "vt" not in d["apb"]:
        print(f"{name}: no vt result"); continue
    vt = d["apb"]["vt"]
    print(f"{name}: vt {vt:.1f} ({'met' if vt >= 90 else 'NOT met'}, bar 90), mean {mean(d['apb']):.1f}")
EOF
tar -czf "$OUT/scorer.tar.gz" -C "$DEST" .
exit $status
