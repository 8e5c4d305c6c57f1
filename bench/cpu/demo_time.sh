#!/usr/bin/env bash
# Times the README's first command, the needle demo, on this machine: `dotnet run --project src/Apb.Cli -- generate`
# (the embedded model, APB over 4 in-process CPU ranks and full attention). One untimed run first builds the project,
# so the timed runs find the build cached, as the README states. Writes every run's wall time and CPU time (user +
# sys of the process and its children: what the run cost, less sensitive than wall time to other jobs on a shared
# machine), their medians, the command, the commit and the machine's load to $OUT/demo-time.txt and the last run's
# output to $OUT/demo-output.txt; fails if a run fails or the demo's answers disagree.
#   bash bench/cpu/demo_time.sh                      # RUNS=3, OUT=bench/results/cpu-<UTC date>
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-3}
OUT=${OUT:-bench/results/cpu-$(date -u +%Y%m%d)}
mkdir -p "$OUT"
cmd=(dotnet run --project src/Apb.Cli -- generate)

"${cmd[@]}" >/dev/null 2>&1 || { echo "the untimed first run of '${cmd[*]}' failed: run it by hand to see why" >&2; exit 1; }
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
walls=(); cpus=()
TIMEFORMAT='%R %U %S'
for i in $(seq "$RUNS"); do
  t=$( { time "${cmd[@]}" >"$OUT/demo-output.txt" 2>&1; } 2>&1 ) || { echo "run $i of '${cmd[*]}' failed: see $OUT/demo-output.txt" >&2; exit 1; }
  grep -q "APB and full attention agree." "$OUT/demo-output.txt" || { echo "run $i: the demo's answers disagree: see $OUT/demo-output.txt" >&2; exit 1; }
  read -r wall user sys <<<"$t"
  walls+=("$wall"); cpus+=("$(python3 -c "print(f'{$user + $sys:.2f}')")")
done
median() { printf '%s\n' "$@" | python3 -c 'import sys; t=sorted(float(x) for x in sys.stdin); n=len(t); print(f"{(t[n//2] if n%2 else (t[n//2-1]+t[n//2])/2):.2f}")'; }
dirty=$([ -z "$(git status --porcelain --untracked-files=no)" ] && echo "" || echo " (plus uncommitted changes)")
{
  echo "command: ${cmd[*]}   (build cached: one untimed run first)"
  echo "commit: $(git rev-parse HEAD)$dirty"
  echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), load average $load_before before, $(cut -d' ' -f1-3 /proc/loadavg) after"
  echo "wall time of each run (s): ${walls[*]}"
  echo "CPU time (user + sys) of each run (s): ${cpus[*]}"
  echo "median of $RUNS: wall $(median "${walls[@]}") s, CPU $(median "${cpus[@]}") s"
} | tee "$OUT/demo-time.txt"
