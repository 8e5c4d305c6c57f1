#!/usr/bin/env bash
# Nsight Compute profiles of chosen kernels under apb commands, in one call (`bash bench/gpu/profile.sh` from the
# repository root on the GPU machine; binaries as for decode.sh: .gpu/apb.xz and .gpu/Apb.Gpu.Tests.xz, unpacked here).
#   1. the GPU tests of $FILTER, when FILTER is set (a check of the binaries before anything is timed)
#   2. $COMMANDS, when set: apb command lines (';' between them) run as they are, each one's stdout in the summary
#   3. each entry of $PROFILES (';' between entries): NAME@KERNEL-REGEX@LAUNCH-SKIP@LAUNCH-COUNT@apb arguments ('@', since a regex
#      may hold '|'). ncu
#      profiles LAUNCH-COUNT launches of the kernels whose names match KERNEL-REGEX, after skipping LAUNCH-SKIP of them
#      (the warm-up), with the clocks left alone (METHOD.md). Its report: $OUT/ncu-NAME.txt; the summary keeps each
#      kernel's name, grid, duration, DRAM and L2 rates, issue and occupancy lines.
#      e.g. PROFILES="attn-nc-128k@apb_attention_hopper@1@1@bench kernel attention --variants hopper --mask none --lengths 128k --repeats 1"
# Where ncu is missing or cannot read the counters (KINDS.md: not on every runtime), step 3 says so and stops there.
source "$(dirname "$0")/env.sh"
WORK=${WORK:-/tmp/apb-profile}
begin_run apb:publish/linux-x64/apb Apb.Gpu.Tests:publish/gpu-tests/Apb.Gpu.Tests

[ -n "${FILTER:-}" ] && gpu_tests_summary "$FILTER"

if [ -n "${COMMANDS:-}" ]; then
  IFS=';' read -ra CS <<< "$COMMANDS"
  i=0
  for c in "${CS[@]}"; do
    i=$((i + 1))
    step "apb $c"
    # shellcheck disable=SC2086 # the entry is a command line: split into its arguments on purpose
    timeout "${COMMAND_TIMEOUT:-180}" "$APB" $c > "$WORK/command$i.md" 2> "$WORK/command$i.log"
    summarize $? "command$i" "apb $c" '^(##|\|)'
  done
fi

[ -n "${PROFILES:-}" ] || { cat "$SUMMARY"; exit 0; }
if ! command -v ncu >/dev/null; then
  echo "no ncu on this machine: no profiles" | tee -a "$SUMMARY"; cat "$SUMMARY"; exit 0
fi
SECTIONS=(--section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats
          --section WarpStateStats --section ComputeWorkloadAnalysis --section SchedulerStats)
IFS=';' read -ra PS <<< "$PROFILES"
for p in "${PS[@]}"; do
  IFS='@' read -r name regex skipn count args <<< "$p"
  step "ncu $name: $regex after $skipn launches, $count launch(es): apb $args"
  # shellcheck disable=SC2086 # args is a command line
  timeout "${NCU_TIMEOUT:-240}" ncu --clock-control none --kernel-name "regex:$regex" --launch-skip "$skipn" \
    --launch-count "$count" "${SECTIONS[@]}" "$APB" $args > "$OUT/ncu-$name.txt" 2>&1
  rc=$?
  { echo "### ncu $name (exit $rc): apb $args"
    grep -E "^  [a-z_0-9]+.*\(|==PROF==|==ERROR==|==WARNING==|Duration|DRAM Throughput|Memory Throughput|L2 Hit Rate|L1/TEX Hit|Compute \(SM\) Throughput|Issue Slots Busy|Issued Ipc|Achieved Occupancy|Theoretical Occupancy|Registers Per|Block Limit Registers|Grid Size|Waves Per SM|No Eligible|Warp Cycles Per Issued" \
      "$OUT/ncu-$name.txt" | head -"${NCU_LINES:-80}"
  } >> "$SUMMARY"
done
cat "$SUMMARY"
