#!/usr/bin/env bash
# Times the README's first command, the needle demo, on this machine: `dotnet run --project src/Apb.Cli -- generate`
# (the embedded model, APB over 4 in-process CPU ranks and full attention). One untimed run first builds the project,
# so the timed runs find the build cached, as the README states. Writes every run's wall time, their median, the
# command, the commit and the machine's load to $OUT/demo-time.txt and the last run's output to $OUT/demo-output.txt;
# fails if a run fails or the demo's answers disagree.
#   bash bench/cpu/demo_time.sh                      # RUNS=3, OUT=bench/results/cpu-<UTC date>
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-3}
OUT=${OUT:-bench/results/cpu-$(date -u +%Y%m%d)}
mkdir -p "$OUT"
cmd=(dotnet run --project src/Apb.Cli -- generate)

"${cmd[@]}" >/dev/null 2>&1 || { echo "the untimed first run of '${cmd[*]}' failed: run it by hand to see why" >&2; exit 1; }
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
times=()
for i in $(seq "$RUNS"); do
  start=$(date +%s.%N)
  "${cmd[@]}" >"$OUT/demo-output.txt" 2>&1 || { echo "run $i of '${cmd[*]}' failed: see $OUT/demo-output.txt" >&2; exit 1; }
  end=$(date +%s.%N)
  grep -q "APB and full attention agree." "$OUT/demo-output.txt" || { echo "run $i: the demo's answers disagree: see $OUT/demo-output.txt" >&2; exit 1; }
  times+=("$(python3 -c "print(f'{$end - $start:.2f}')")")
done
median=$(printf '%s\n' "${times[@]}" | sort -g | python3 -c 'import sys; t=[float(x) for x in sys.stdin]; n=len(t); print(f"{(t[n//2] if n%2 else (t[n//2-1]+t[n//2])/2):.2f}")')
dirty=$([ -z "$(git status --porcelain --untracked-files=no)" ] && echo "" || echo " (plus uncommitted changes)")
{
  echo "command: ${cmd[*]}   (build cached: one untimed run first)"
  echo "commit: $(git rev-parse HEAD)$dirty"
  echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), load average $load_before before, $(cut -d' ' -f1-3 /proc/loadavg) after"
  echo "runs (s): ${times[*]}"
  echo "median of $RUNS (s): $median"
} | tee "$OUT/demo-time.txt"
