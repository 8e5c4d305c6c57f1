#!/usr/bin/env bash
# RULER accuracy of APB's defaults against full attention on one GPU, and of the scorers they were chosen over: the
# tables of issue #24 (`bash bench/gpu/scorer.sh` from the repository root on the GPU machine, the apb binary published
# beforehand): `apb eval ruler`, the 4 APB ranks in-process on that GPU. Every table is seed 0 (a sample depends only on
# the seed, task, length and index), so the rows of one length are the same samples, and the first 20 are those of
# bench/results/scorer-gpu-20261203.
#   defaults-LONG         full and apb with no --scorer and no lengths (auto: the retaining heads with the novelty term
#                         when the model folder ships heads, as models/embedded does), all tasks at LONG (16k)
#   defaults-SHORT        as defaults-LONG at SHORT (4k)
#   query-LONG            apb --scorer query (the training-free scorer with the novelty term: a model without heads)
#   retaining-only-LONG   apb --scorer retaining-only (the heads alone: the default before the novelty term joined them,
#                         bench/results/scorer-gpu-20261203), the comparison at LONG
#   retaining-only-SHORT  as retaining-only-LONG at SHORT
#   passing512-LONG       the defaults with --passing 512 (l_p = n/32 at 16K instead of n/64): whether a longer passing
#                         block buys the multi-key/multi-value points the heads lost at 16K
#   passing512-SHORT      as passing512-LONG at SHORT (l_p = n/8 at 4K)
#   passing256-SHORT      the defaults with --passing 256 at SHORT (l_p = n/16 at 4K); not in the default STEPS
#   query-SHORT           as query-LONG at SHORT
# Bars (#24): defaults within 2 points of full on the mean and within 5 on every task but cwe, at 4K and 16K; the
# query-aware scorer at 16K with vt >= 90 (l_p at its default, n/64). The last lines print each bar as met or not, and
# the same two bars for every other table against full of its length (for comparison; they are not the issue's bars).
# Environment: MODEL (models/embedded), SAMPLES (20 per task), RANKS (4), TASKS (all), SHORT (4k), LONG (16k),
# DEVICE (cuda; cpu runs the same tables on the host, to try the script on a small slice), STEPS (a comma list of the
# tables above by name, in the order above; default all), BUDGET (seconds for all tables, 540: each table's timeout is
# what is left of it, and a table that would start with less than 20 s left is skipped, so the script ends inside one
# 600 s device call). Writes $SCORER_DIR (default /tmp/apb-scorer): NAME.json and NAME.md per table, scorer.log
# (stderr, timings), packed into $OUT/scorer.tar.gz at the end (the device tool brings back at most 8 files).
# Runtime on one H200: 17-21 s per table, full and apb or apb alone (bench/results/scorer-gpu-20261203/scorer.log, warm
# kernel cache; the first call on a fresh machine also compiles the kernels), so all eight tables take about 3 minutes.
source "$(dirname "$0")/env.sh"
require_apb

MODEL=${MODEL:-models/embedded}
SAMPLES=${SAMPLES:-20}
RANKS=${RANKS:-4}
TASKS=${TASKS:-all}
SHORT=${SHORT:-4k}
LONG=${LONG:-16k}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-defaults-$LONG,defaults-$SHORT,query-$LONG,retaining-only-$LONG,retaining-only-$SHORT,passing512-$LONG,passing512-$SHORT,query-$SHORT}
BUDGET=${BUDGET:-540}
DEST="${SCORER_DIR:-/tmp/apb-scorer}"
mkdir -p "$DEST"
LOG="$DEST/scorer.log"
: >"$LOG"
status=0
require_model
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
table "defaults-$SHORT" "$SHORT" --strategies full,apb
table "query-$LONG" "$LONG" --strategies apb --scorer query
table "retaining-only-$LONG" "$LONG" --strategies apb --scorer retaining-only
table "retaining-only-$SHORT" "$SHORT" --strategies apb --scorer retaining-only
table "passing512-$LONG" "$LONG" --strategies apb --passing 512
table "passing512-$SHORT" "$SHORT" --strategies apb --passing 512
table "passing256-$SHORT" "$SHORT" --strategies apb --passing 256
table "query-$SHORT" "$SHORT" --strategies apb --scorer query

# The bars, from the JSON files that exist (full's accuracy comes from the defaults table of the same length).
step "bars"
python3 - "$DEST" "$SHORT" "$LONG" <<'EOF' || status=1
import json, os, sys
dest, short, long_ = sys.argv[1:]
def rows(name):
    p = os.path.join(dest, name + ".json")
    # A table that failed or timed out leaves no file or an empty one (its error is in scorer.log).
    if not os.path.exists(p) or os.path.getsize(p) == 0: return None
    out = {}
    for r in json.load(open(p))["results"]:
        out.setdefault(r["strategy"], {})[r["task"]] = 100 * r["accuracy"]
    return out
def mean(d): return sum(d.values()) / len(d)
def bars(label, full, apb):
    common = [t for t in full if t in apb]
    gap = mean({t: full[t] for t in common}) - mean({t: apb[t] for t in common})
    worst = max(((full[t] - apb[t], t) for t in common if t != "cwe"), default=(0.0, "-"))
    print(f"{label}: full {mean(full):.1f}, apb {mean(apb):.1f} (mean {gap:+.1f} under full: "
          f"{'met' if gap <= 2 else 'NOT met'}, bar 2); worst task but cwe {worst[1]} {worst[0]:+.1f} under full: "
          f"{'met' if worst[0] <= 5 else 'NOT met'}, bar 5")
names = sorted(f[:-5] for f in os.listdir(dest) if f.endswith(".json"))
for length in (short, long_):
    d = rows("defaults-" + length)
    if not d or "full" not in d or "apb" not in d:
        print(f"defaults at {length}: no table"); continue
    bars(f"defaults at {length}", d["full"], d["apb"])
    for name in names:
        other = rows(name)
        if name.endswith("-" + length) and not name.startswith("defaults-") and other and "apb" in other:
            bars(f"  (for comparison) {name}", d["full"], other["apb"])
d = rows("query-" + long_)
if not d or "apb" not in d or "vt" not in d["apb"]:
    print(f"query-{long_}: no vt result")
else:
    vt = d["apb"]["vt"]
    print(f"query-{long_}: vt {vt:.1f} ({'met' if vt >= 90 else 'NOT met'}, bar 90), mean {mean(d['apb']):.1f}")
EOF
tar -czf "$OUT/scorer.tar.gz" -C "$DEST" .
exit $status
