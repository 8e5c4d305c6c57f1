# Sourced first by every bench/gpu script: the settings every run on the GPU machine needs, in one place.
#   - NVLink multicast off for NCCL, torch and NVSHMEM (it can take the host's GPUs out of service there)
#   - the repository root as the working directory; APB = the published apb binary, GPU_TESTS = the published GPU test
#     binary (tests/Apb.Gpu.Tests), OUT = where results go (the device tool brings back what lands under its $OUT), all
#     overridable
#   - the NVRTC kernel cache outside $OUT (only a few files come back from there; a fresh machine compiles once)
#   - step (a step's heading, with the time and the seconds since the start) and append_log (a step's output into $LOG)
#   - unpack_binaries / unpack_builds (the binaries that travel), ruler_run / pack_runs (a session's `apb eval ruler` runs),
#     begin_ruler_call / left (a call script of such runs under a time limit)
set -u
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
APB=${APB:-$ROOT/publish/linux-x64/apb}
GPU_TESTS=${GPU_TESTS:-$ROOT/publish/gpu-tests/Apb.Gpu.Tests}
OUT=${OUT:-$ROOT/.out}
mkdir -p "$OUT"
export APB_KERNEL_CACHE=${APB_KERNEL_CACHE:-/tmp/apb-kernel-cache}

# Stops the script when there is no binary to run.
require_apb() {
  [ -x "$APB" ] && return 0
  echo "no apb binary at $APB: publish it first (dotnet publish src/Apb.Cli -c Release -r linux-x64 -p:PublishAot=true -o publish/linux-x64)"
  exit 2
}

# Stops the script when MODEL is not a checkpoint folder, and says (also into $LOG when set) when it ships no retaining
# heads: APB's defaults then run the query-aware scorer.
require_model() {
  [ -f "$MODEL/config.json" ] || { echo "no $MODEL/config.json: MODEL must be a HF checkpoint folder"; exit 2; }
  [ -f "$MODEL/retaining_heads.safetensors" ] && return 0
  local note="note: $MODEL has no retaining_heads.safetensors, so the defaults run the query-aware scorer"
  if [ -n "$LOG" ]; then echo "$note" | tee -a "$LOG"; else echo "$note"; fi
}

# Stops the script when there is no GPU test binary to run (xz-compressed, as it may travel, is unpacked first).
require_gpu_tests() {
  [ ! -x "$GPU_TESTS" ] && [ -f "$GPU_TESTS.xz" ] && xz -dk "$GPU_TESTS.xz" && chmod +x "$GPU_TESTS"
  [ -x "$GPU_TESTS" ] && return 0
  echo "no GPU test binary at $GPU_TESTS: carry .gpu/gpu-tests.tar.xz (tools/publish-gpu.sh) or publish it first (dotnet publish tests/Apb.Gpu.Tests -c Release -r linux-x64 -p:PublishAot=true -o publish/gpu-tests)"
  exit 2
}

# Unpacks the binaries that travel xz-compressed (the device tool's working-tree limit) from ${PACK:-.gpu}: each
# NAME:PATH argument is NAME.xz -> PATH, made executable; a pack that is not there is skipped. Then unpack_builds.
unpack_binaries() {
  local f src dst
  for f; do
    src=${PACK:-$ROOT/.gpu}/${f%%:*}.xz; dst=${f#*:}
    mkdir -p "$(dirname "$dst")"
    [ -f "$src" ] && xz -dc "$src" > "$dst" && chmod +x "$dst"
  done
  unpack_builds   # a carried builds.tar.xz (tools/publish-gpu.sh) installs its current build over those
  return 0
}

# Unpacks .gpu/builds.tar.xz (tools/publish-gpu.sh: every build's apb, one archive) and, when it was carried too,
# .gpu/gpu-tests.tar.xz (every build's Apb.Gpu.Tests): the current build as publish/linux-x64/apb and
# publish/gpu-tests/Apb.Gpu.Tests, every build as publish/builds/NAME/ (for A/B runs of two commits' host code in one
# call). Without the archives it does nothing (scripts may still use unpack_binaries).
unpack_builds() {
  local dir=${PACK:-$ROOT/.gpu} current
  [ -f "$dir/builds.tar.xz" ] || return 0
  rm -rf "$ROOT/publish/builds" && mkdir -p "$ROOT/publish/builds" "$ROOT/publish/linux-x64" "$ROOT/publish/gpu-tests"
  xz -dc "$dir/builds.tar.xz" | tar -C "$ROOT/publish" -xf -
  [ -f "$dir/gpu-tests.tar.xz" ] && xz -dc "$dir/gpu-tests.tar.xz" | tar -C "$ROOT/publish" -xf -
  current=$(cat "$ROOT/publish/builds/CURRENT" 2>/dev/null || true)
  [ -n "$current" ] && [ -d "$ROOT/publish/builds/$current" ] || { echo "builds.tar.xz names no current build"; return 0; }
  cp "$ROOT/publish/builds/$current/apb" "$ROOT/publish/linux-x64/apb"
  [ -f "$ROOT/publish/builds/$current/Apb.Gpu.Tests" ] && cp "$ROOT/publish/builds/$current/Apb.Gpu.Tests" "$ROOT/publish/gpu-tests/Apb.Gpu.Tests"
  find "$ROOT/publish/builds" -type f \( -name apb -o -name Apb.Gpu.Tests \) -exec chmod +x {} +
  chmod +x "$ROOT/publish/linux-x64/apb"
  echo "builds: $(ls "$ROOT/publish/builds" | grep -v CURRENT | tr '\n' ' ')(current: $current, commit $(cat "$ROOT/publish/builds/$current/commit.txt"))"
}

# One `apb eval ruler` run of a session script: ruler_run NAME SECONDS ARGS... runs it on ${MODEL:-models/embedded} and
# ${DEVICE:-cuda} under a time limit, writes NAME.json / .md / .log into ${RUNS:-$OUT/r}, appends "NAME rc=.. N s" to
# times.txt there and prints the run's mean rows. pack_runs then tars that folder into $OUT/runs.tgz (the device tool
# brings back at most 8 files). Pair the files with `apb eval paired`.
ruler_run() {
  local name=$1 limit=$2 dir=${RUNS:-$OUT/r} start rc
  shift 2
  mkdir -p "$dir"
  start=$(date +%s)
  timeout "$limit" "$APB" eval ruler --model "${MODEL:-models/embedded}" --device "${DEVICE:-cuda}" "$@" \
    --json "$dir/$name.json" > "$dir/$name.md" 2> "$dir/$name.log"
  rc=$?
  echo "$name rc=$rc $(( $(date +%s) - start )) s" | tee -a "$dir/times.txt"
  grep -E '\*\*mean' "$dir/$name.md"
  return 0
}
pack_runs() {
  local dir=${RUNS:-$OUT/r}
  tar -C "$(dirname "$dir")" -czf "$OUT/runs.tgz" "$(basename "$dir")"
}

# The start of a session's call script of ruler_run runs: RUNS=$1 (a fresh folder, outside $OUT: pack_runs brings it
# back) with the GPU's name and the model's hashes at the top of its times.txt, the binaries installed, and the clock
# that `left` reads started. A script then guards each run by what is left: [ "$(left)" -gt 90 ] && ruler_run NAME ...
begin_ruler_call() {
  export RUNS=$1
  call_t0=$(date +%s)
  unpack_binaries
  rm -rf "$RUNS" && mkdir -p "$RUNS"
  { nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo "no GPU (nvidia-smi not found)"
    sha256sum "${MODEL:-models/embedded}"/*.safetensors; } | tee -a "$RUNS/times.txt"
}

# Seconds a call script has left: CALL_LIMIT (default 500) less the time since begin_ruler_call, or for a script that
# did not call it, since this file was sourced (t0 below).
left() { echo $(( ${CALL_LIMIT:-500} - ($(date +%s) - ${call_t0:-$t0}) )); }

# The start of a script that writes a summary: makes $WORK, unpacks the binaries named (unpack_binaries' NAME:PATH
# arguments), empties SUMMARY=$OUT/summary.md and stops when there is no apb binary.
begin_run() {
  mkdir -p "$WORK"
  unpack_binaries "$@"
  SUMMARY=$OUT/summary.md
  : > "$SUMMARY"
  require_apb
}

# The script's start, for step's "+N s". LOG starts empty: a script that sets it (after sourcing this) gets step's lines
# appended to that file as well.
t0=$(date +%s)
LOG=

# Prints "== HH:MM:SS (+N s) <text>" (N: seconds since the start), and appends it to $LOG when LOG is set.
step() {
  local line
  line="== $(date -u +%T) (+$(( $(date +%s) - t0 )) s) $*"
  if [ -n "$LOG" ]; then echo "$line" | tee -a "$LOG"; else echo "$line"; fi
}

# For each NAME: appends $WORK/NAME.log (the command's stderr) and $WORK/NAME.md (its stdout) to $LOG, each under a
# "---- NAME (stderr)" / "---- NAME (stdout)" line (a missing file leaves its line with nothing under it).
append_log() {
  local f
  for f; do
    { echo "---- $f (stderr)"; cat "$WORK/$f.log"; echo "---- $f (stdout)"; cat "$WORK/$f.md"; } >>"$LOG" 2>/dev/null
  done
}

# Appends "NAME exit RC" and, under "### HEADING", the lines of $WORK/NAME.md matching PATTERN (default: table rows)
# to $SUMMARY: a step's status and its table, after the step wrote its stdout to $WORK/NAME.md.
summarize() {
  local rc=$1 name=$2 heading=$3 pattern=${4:-'^\|'}
  echo "$name exit $rc" >> "$SUMMARY"
  { echo "### $heading"; grep -E "$pattern" "$WORK/$name.md"; } >> "$SUMMARY"
}

# ptxas -v of a kernel file (registers and spills per kernel): the whole output in $WORK/ptxas.txt, one line per kernel
# matching PATTERN (default: all) and the exit status in $SUMMARY. Nothing where nvcc is not installed.
ptxas_summary() {
  local file=$1 pattern=${2:-.}
  command -v nvcc >/dev/null || return 0
  step "ptxas -v $(basename "$file")"
  timeout 120 nvcc -gencode=arch=compute_90a,code=sm_90a -cubin -o "/tmp/$(basename "$file").cubin" -Xptxas -v \
    "$file" > "$WORK/ptxas.txt" 2>&1
  echo "ptxas exit $?" >> "$SUMMARY"
  grep -E "Compiling entry|registers|spill" "$WORK/ptxas.txt" | paste - - - | sed -E 's/ptxas info *: //g' \
    | grep -E "$pattern" | head -40 >> "$SUMMARY"
}

# True when SKIP (space-separated step names) names step $1.
skip() { [[ " ${SKIP:-} " == *" $1 "* ]]; }

# Stops a variants script unless every define of VARIANTS names a knob of the kernel files given: ';' between
# variants, ',' between the NAME=VALUE defines of one, '-' for a variant of none. A knob is a macro the files guard
# with #ifndef NAME or #ifdef NAME; a -D of any other name compiles the same kernel, and the variants would time one
# kernel several times. $1: the script's name for the message; the rest: the kernel files. Sets VS, the variants.
require_knobs() {
  local script=$1 v d name; shift
  local files=("$@")
  knob_error() {
    echo "$script: $1"
    echo "  VARIANTS=\"-;A=1,B=2\" (';' between variants, ',' between defines, '-' for none); each name must be a macro that"
    echo "  ${files[*]} guard(s) with #ifndef NAME or #ifdef NAME. Add the knob to the kernel first."
    echo "  A part @FOLDER compiles the kernel files in FOLDER instead of the embedded ones."
    exit 2
  }
  [ -n "${VARIANTS:-}" ] || knob_error "VARIANTS is required (there is no default set of variants)."
  IFS=';' read -ra VS <<< "$VARIANTS"
  for v in "${VS[@]}"; do
    [ "$v" = "-" ] && continue
    local src; src=$(variant_sources "$v")
    if [ -n "$src" ]; then
      compgen -G "$src/*.cu*" > /dev/null \
        || knob_error "@$src: no such folder, or it holds no .cu/.cuh file (a variant @FOLDER compiles the kernel files in FOLDER)."
    fi
    IFS=',' read -ra DS <<< "$(variant_defines "$v")"
    for d in "${DS[@]}"; do
      [ -n "$d" ] || continue
      name=${d%%=*}
      grep -Eqh "^[[:space:]]*#[[:space:]]*ifn?def[[:space:]]+$name([[:space:]]|$)" "${files[@]}" ${src:+"$src"/*.cu*} \
        || knob_error "$name is not an #ifndef- or #ifdef-guarded macro in ${files[*]}${src:+ or $src}."
    done
  done
}

# A variant is '-' (the committed kernel) or a ','-list of NAME=VALUE defines and at most one @FOLDER (kernel files to
# compile instead of the embedded ones, through APB_KERNEL_SOURCES: an edited kernel, or an older version of one).
# Its defines for APB_KERNEL_DEFINES and nvcc:
variant_defines() {
  [ "$1" = "-" ] && return
  local d out=(); IFS=',' read -ra DS <<< "$1"
  for d in "${DS[@]}"; do [[ $d == @* ]] || out+=("$d"); done
  (IFS=','; echo "${out[*]}")
}
# ... and its folder, absolute, for APB_KERNEL_SOURCES (empty: the embedded files).
variant_sources() {
  local d; IFS=',' read -ra DS <<< "$1"
  for d in "${DS[@]}"; do [[ $d == @* ]] && { realpath -m "${d#@}"; return; }; done
  true
}

# The GPU tests of FILTER: output in $WORK/gpu-tests.txt and .json, the last line and any failures in $SUMMARY.
gpu_tests_summary() {
  require_gpu_tests
  step "GPU tests, $1"
  timeout "${TESTS_TIMEOUT:-240}" "$GPU_TESTS" --filter "$1" --out "$WORK/gpu-tests.json" > "$WORK/gpu-tests.txt" 2>&1
  echo "GPU tests exit $?: $(tail -1 "$WORK/gpu-tests.txt")" | tee -a "$SUMMARY"
  grep -E "FAIL" "$WORK/gpu-tests.txt" | head -20 | tee -a "$SUMMARY"
}
