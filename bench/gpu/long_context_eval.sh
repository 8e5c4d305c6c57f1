#!/usr/bin/env bash
# Every accuracy table of issue #20 for one model, its runs side by side on one GPU (`bash bench/gpu/long_context_eval.sh`
# from the repository root, binaries as for train.sh: .gpu/apb.xz is unpacked). The runs and their file names are
# those of bench/results/long-context-20261204/call11, so the folder this writes can be copied in as a new call and
# `python3 bench/gpu/long_context_summary.py` reads it:
#   s0-SHORT        full and apb (APB's defaults) on 4 ranks at the SHORT lengths (issue #24's bars)
#   x4-L            full, star, apb (retaining heads) and apb-balanced on 4 ranks, for each L in LONG
#   x8-L            full, star, apb and apb-balanced on 8 ranks (full does not depend on the ranks, and x4-L has it
#                   too; it runs here again so that this run's table has its own "minus full (paired, 95 %)" row)
#   xR-L-query      apb with the query-aware scorer
# Why side by side: the small model leaves one GPU mostly idle (each eval is bound by launches and host work), so
# a few evals at once take little longer than one at 20 samples. Not at 60: in session 17 four at once hit 430 s each,
# Star's tasks 8-174 s where APB alone takes 3-11 s (the multi-rank strategies launch many small kernels per token, and
# the processes time-slice the GPU); one at a time, APB at 60 samples took ~75 s per run
# (bench/results/long-context-20261205). Greedy decoding is deterministic, so a run's numbers do not depend on its
# neighbours; its seconds do (times.txt has them, wall clock, neighbours included).
# Environment: MODEL (models/embedded), DEVICE (cuda; cpu with small settings checks the script anywhere), SAMPLES (20),
# TASKS (all), SHORT (4k,16k; empty: no short run), LONG ("32k 64k"), PARALLEL (3; 1 past 20 samples), T_RUN (seconds per run, 300),
# STRATEGIES of the xR-L runs (full,star,apb,apb-balanced; #20's bar needs full,star,apb), QUERY (1; 0: no xR-L-query
# runs) -- at SAMPLES=60 use PARALLEL=1 and split it over calls (LONG="64k" SHORT= QUERY=0 STRATEGIES=apb, ...; files
# of one seed pair across calls: `apb eval paired FULL.json APB.json --other-strategy apb`),
# FLAGS (more `apb eval ruler` flags for every run, e.g. "--novelty-weight 0.25": a setting measured on the whole set),
# RESUME (a folder with an earlier call's NAME.json files, e.g. its long-context.tgz unpacked under .gpu/ and carried:
# a run whose file is there continues it with `apb eval ruler --resume`, running only the rows it lacks, and with a
# larger SAMPLES than the file's only the samples its rows lack; the binary must be the same build, which --resume checks).
# Writes NAME.json, NAME.md and NAME.log per run, times.txt and model-sha.txt into WORK (/tmp/apb-long-context), then
# all of them as $OUT/long-context.tgz (the device tool brings back at most 8 files); prints each run's means and, where
# full ran, each strategy's paired difference from it. Exits 1
# when a run failed or ran out of time.
source "$(dirname "$0")/env.sh"

MODEL=${MODEL:-models/embedded}
DEVICE=${DEVICE:-cuda}
SAMPLES=${SAMPLES:-20}
TASKS=${TASKS:-all}
SHORT=${SHORT-4k,16k}
LONG=${LONG:-32k 64k}
# Side by side only at small sample counts (see above): past 20 samples a run, one at a time unless told.
if [ -z "${PARALLEL:-}" ]; then [[ $SAMPLES =~ ^[0-9]+$ ]] && (( SAMPLES > 20 )) && PARALLEL=1 || PARALLEL=3; fi
FLAGS=${FLAGS:-}
T_RUN=${T_RUN:-300}
STRATEGIES=${STRATEGIES:-full,star,apb,apb-balanced}
QUERY=${QUERY:-1}
DEST=${WORK:-/tmp/apb-long-context}
[[ $PARALLEL =~ ^[1-9][0-9]*$ ]] || { echo "PARALLEL=$PARALLEL: a positive whole number of runs at once"; exit 2; }
unpack_binaries apb:publish/linux-x64/apb
require_apb
require_model
rm -rf "$DEST"; mkdir -p "$DEST"
: > "$DEST/times.txt"
sha256sum "$MODEL"/*.safetensors > "$DEST/model-sha.txt"

# One run in the background: run NAME FLAGS... (after at most PARALLEL - 1 others are still going).
run() {
  local name=$1
  shift
  while (( $(jobs -rp | wc -l) >= PARALLEL )); do wait -n; done
  (
    t=$(date +%s)
    resume=()
    if [ -n "${RESUME:-}" ] && [ -s "$RESUME/$name.json" ]; then cp "$RESUME/$name.json" "$DEST/$name.json"; resume=(--resume); fi
    # shellcheck disable=SC2086 # FLAGS is a list of flags
    timeout "$T_RUN" "$APB" eval ruler --model "$MODEL" --device "$DEVICE" --tasks "$TASKS" --samples "$SAMPLES" "$@" $FLAGS \
      "${resume[@]}" --json "$DEST/$name.json" > "$DEST/$name.md" 2> "$DEST/$name.log"
    echo "$name rc=$? $(( $(date +%s) - t )) s" >> "$DEST/times.txt"
  ) &
}

step "long-context tables of $MODEL on $DEVICE, $PARALLEL at a time${FLAGS:+, with $FLAGS}"
# The longest first, so the last to start are the short ones.
longest_first=$(for L in $LONG; do echo "$L"; done | sort -rn)
for L in $longest_first; do
  run "x8-$L" --length "$L" --ranks 8 --strategies "$STRATEGIES"
  run "x4-$L" --length "$L" --ranks 4 --strategies "$STRATEGIES"
done
if [ "$QUERY" != 0 ]; then
  for L in $longest_first; do
    for R in 8 4; do run "x$R-$L-query" --length "$L" --ranks "$R" --strategies apb --scorer query; done
  done
fi
[ -n "$SHORT" ] && run "s0-${SHORT//,/-}" --length "$SHORT" --ranks 4 --strategies full,apb
wait
tar -czf "$OUT/long-context.tgz" -C "$DEST" .
step "done"
cat "$DEST/times.txt"
for f in "$DEST"/*.md; do
  echo "$(basename "$f" .md): $(grep -F -e '**mean**' -e 'minus full' "$f" | tr -d '*' | tr -s ' ' | paste -sd ';')"
done
! grep -qv " rc=0 " "$DEST/times.txt"
