#!/usr/bin/env bash
# Issue #24's 4K mean bar (APB's defaults 2.1 under full on seed 0, bar 2): candidate APB settings tuned on samples that
# are not the committed ones, the winner then confirmed on them, in one device call (`bash bench/gpu/scorer_tune.sh` from
# the repository root on the GPU machine, the apb binary published beforehand). `apb eval ruler`, the RANKS APB ranks
# in-process on that GPU, every table over all TASKS with SAMPLES per task.
#   1. Tuning, seed SEED (1): at SHORT (4k) and then at LONG (16k), full and APB's defaults in one table, then APB alone
#      with each variant (the defaults otherwise):
#        passing128    --passing 128           (l_p: n/32 at 4K; the default is n/64, so 64 at 4K and 256 at 16K)
#        passing256    --passing 256           (n/16 at 4K; the default itself at 16K)
#        novelty0.25   --novelty-weight 0.25   (the novelty term against the retaining heads; the default is 0.5)
#        novelty1      --novelty-weight 1
#        anchor        --anchor ANCHOR_SHORT (256) at SHORT, --anchor ANCHOR_LONG (1024) at LONG (twice the default
#                      n/32 at both; the default also grows at 4K to hold the query and 64 context tokens)
#      then, while BUDGET lasts, EXTRA_LONG at LONG only: passing512, passing1024 (n/32 and n/16 at 16K, so that a
#      default of l_p = n/32 or n/16, as the 4K variants are, is judged at 16K too).
#   2. Pick, by a rule fixed before the run (scorer_tune_summary.py): among the variants with both lengths' tables on
#      seed SEED, fewest #24 bars missed (4 in all: mean within 2 and every task but cwe within 5, at each length), then
#      the smallest mean gap at SHORT, then at LONG; a tie goes to the defaults (a variant must beat them). CONFIRM=NAME
#      confirms NAME instead; CONFIRM=none skips step 3.
#   3. Confirmation on seed CONFIRM_SEED (0: the samples of the committed tables,
#      bench/results/session-20261203-call3/scorer): full and the pick in one table at each length, then the defaults
#      (APB alone) at each length, to compare with in the same call.
# Summary (summary.md, also printed and copied to $OUT): for every variant and seed, APB's mean, full's, the mean gap,
# the worst task but cwe and whether #24's bars are met, at both lengths; the pick and why.
# Environment: MODEL (models/embedded), SEED (1), CONFIRM_SEED (0), SAMPLES (20), RANKS (4), TASKS (all), SHORT (4k),
# LONG (16k), ANCHOR_SHORT (256), ANCHOR_LONG (1024), VARIANTS (the names above but defaults, comma list; default all),
# EXTRA_LONG (passing512,passing1024; empty for none), CONFIRM (the pick; a name, or none), DEVICE (cuda; cpu runs the
# same on the host, to try the script on a small slice), BUDGET (seconds for everything, 540: each table's timeout is
# what is left of it, a table that would start with less than 20 s left is skipped, and tuning stops RESERVE (80) s early
# to leave the confirmation its time, so the script ends inside one 600 s device call). Writes $TUNE_DIR (default
# /tmp/apb-tune): seedS-LENGTH-NAME.json and .md per table, tune.log (stderr, timings), summary.md and summary.json, all
# packed into $OUT/tune.tar.gz (the device tool brings back at most 8 files).
# Runtime on one H200 (bench/results/session-20261203-call3/scorer/scorer.log, seed 0, 20 samples): a 4K table of full
# and APB 14 s, APB alone about 12 s; at 16K 18 s and 15-16 s. So tuning is about 75 s at 4K, 100 s at 16K, 35 s for the
# extras, and the confirmation about 60 s: about 4.5 minutes, plus the kernels' compilation on a fresh machine.
# `apb eval ruler` takes one set of APB settings per run (--anchor, --passing, --novelty-weight apply to every strategy in
# --strategies), so each variant is a run of its own; a run's model load and sample generation cost 2-3 s.
source "$(dirname "$0")/env.sh"
require_apb

MODEL=${MODEL:-models/embedded}
SEED=${SEED:-1}
CONFIRM_SEED=${CONFIRM_SEED:-0}
SAMPLES=${SAMPLES:-20}
RANKS=${RANKS:-4}
TASKS=${TASKS:-all}
SHORT=${SHORT:-4k}
LONG=${LONG:-16k}
ANCHOR_SHORT=${ANCHOR_SHORT:-256}
ANCHOR_LONG=${ANCHOR_LONG:-1024}
VARIANTS=${VARIANTS:-passing128,passing256,novelty0.25,novelty1,anchor}
EXTRA_LONG=${EXTRA_LONG-passing512,passing1024}
CONFIRM=${CONFIRM:-}
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-540}
RESERVE=${RESERVE:-80}
DEST="${TUNE_DIR:-/tmp/apb-tune}"
mkdir -p "$DEST"
rm -f "$DEST"/seed*.json "$DEST"/seed*.md "$DEST"/summary.* "$DEST"/pick.txt
LOG="$DEST/tune.log"
: >"$LOG"
status=0
require_model
deadline=$(( t0 + BUDGET ))
[ "$CONFIRM" = none ] && RESERVE=0
SUMMARY="python3 $(dirname "$0")/scorer_tune_summary.py $DEST $SEED $CONFIRM_SEED $SHORT $LONG"

# flags NAME LENGTH: the APB flags of a variant at LENGTH (defaults: none); an unknown name stops the script.
flags() {
  if [ "$1" = defaults ]; then :
  elif [[ $1 =~ ^passing([0-9]+)$ ]]; then echo "--passing ${BASH_REMATCH[1]}"
  elif [[ $1 =~ ^novelty([0-9]+(\.[0-9]+)?)$ ]]; then echo "--novelty-weight ${BASH_REMATCH[1]}"
  elif [ "$1" = anchor ]; then if [ "$2" = "$SHORT" ]; then echo "--anchor $ANCHOR_SHORT"; else echo "--anchor $ANCHOR_LONG"; fi
  else echo "unknown variant '$1': expected defaults, passingN (N tokens), noveltyW (a weight such as 0.25) or anchor" >&2; exit 2
  fi
}

# table SEED LENGTH NAME STRATEGIES END: `apb eval ruler` of STRATEGIES (apb, or full,apb) with variant NAME's flags on
# seed SEED at LENGTH, bounded by what is left until END; writes $DEST/seedSEED-LENGTH-NAME.json and .md (the table, also
# printed); stderr and "rc=... in N s" go to $LOG. A failure or a timeout sets status=1.
table() {
  local seed=$1 length=$2 name=$3 strategies=$4 end=$5 t rc left file extra
  file="$DEST/seed$seed-$length-$name"
  left=$(( end - $(date +%s) ))
  if [ "$left" -lt 20 ]; then step "seed $seed $length $name: skipped, $left s left"; status=1; return 0; fi
  extra=$(flags "$name" "$length") || exit 2
  step "seed $seed $length $name: $SAMPLES samples per task, --strategies $strategies${extra:+ $extra} (at most $left s)"
  t=$(date +%s)
  # shellcheck disable=SC2086 # the variant's flags are words
  timeout "$left" "$APB" eval ruler --model "$MODEL" --device "$DEVICE" --tasks "$TASKS" --length "$length" \
    --samples "$SAMPLES" --ranks "$RANKS" --seed "$seed" --strategies "$strategies" $extra --json "$file.json" \
    >"$file.md" 2>>"$LOG"
  rc=$?
  echo "rc=$rc in $(( $(date +%s) - t )) s$([ $rc -eq 124 ] && echo ' (timed out: BUDGET)')" | tee -a "$LOG"
  [ $rc -eq 0 ] || status=1
  cat "$file.md"
}

for name in ${VARIANTS//,/ }; do flags "$name" "$SHORT" >/dev/null || exit 2; done
for name in ${EXTRA_LONG//,/ }; do flags "$name" "$LONG" >/dev/null || exit 2; done
[ -z "$CONFIRM" ] || [ "$CONFIRM" = none ] || flags "$CONFIRM" "$SHORT" >/dev/null || exit 2

# 1. Tuning: full runs once per length, in the defaults' table.
tune_end=$(( deadline - RESERVE ))
for length in "$SHORT" "$LONG"; do
  table "$SEED" "$length" defaults full,apb "$tune_end"
  for name in ${VARIANTS//,/ }; do table "$SEED" "$length" "$name" apb "$tune_end"; done
done
for name in ${EXTRA_LONG//,/ }; do table "$SEED" "$LONG" "$name" apb "$tune_end"; done

# 2. The pick, and 3. its confirmation on the committed samples.
step "pick"
$SUMMARY >/dev/null || status=1
pick=${CONFIRM:-$(cat "$DEST/pick.txt" 2>/dev/null)}
if [ "$CONFIRM" = none ]; then
  step "confirmation skipped (CONFIRM=none)"
elif [ -z "$pick" ]; then
  step "confirmation skipped: no variant has tables at both lengths on seed $SEED"; status=1
else
  step "confirming $pick on seed $CONFIRM_SEED"
  # Full with the pick in one table per length, then (for the same-call comparison with the committed tables) the
  # defaults, once both lengths of the pick are in.
  for length in "$SHORT" "$LONG"; do table "$CONFIRM_SEED" "$length" "$pick" full,apb "$deadline"; done
  if [ "$pick" != defaults ]; then
    for length in "$SHORT" "$LONG"; do table "$CONFIRM_SEED" "$length" defaults apb "$deadline"; done
  fi
fi

step "summary"
$SUMMARY || status=1
cp "$DEST/summary.md" "$OUT/summary.md" 2>/dev/null
tar -czf "$OUT/tune.tar.gz" -C "$DEST" .
exit $status
