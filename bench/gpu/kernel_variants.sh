#!/usr/bin/env bash
# Compile-time variants of any kernel file in one call: `bash bench/gpu/kernel_variants.sh` from the repository root on
# the GPU machine, binaries as for decode.sh (.gpu/*.xz, unpacked here). Each entry of VARIANTS goes to NVRTC as -D
# options through APB_KERNEL_DEFINES; '-' is the committed kernel. ';' between variants, ',' between the NAME=VALUE
# defines of one, e.g. VARIANTS="-;GEMV_MIN_BLOCKS=8". Each NAME must be an #ifndef- or #ifdef-guarded macro of
# $KERNEL or of the headers in $HEADERS (require_knobs in env.sh). A part @FOLDER compiles the kernel files in FOLDER
# instead of the embedded ones (APB_KERNEL_SOURCES), e.g. "-;@.gpu/old" with an older attention_hopper.cu put in
# .gpu/old, timed beside the committed one with the same binary. Per variant:
#   1. ptxas -v of $KERNEL with those defines: registers and spills of the kernels matching $PTXAS (default: all) and
#      any wgmma serialization warning (C75xx), where nvcc is installed
#   2. the GPU tests $TEST_FILTER (correctness of that build against the CPU), when TEST_FILTER is set
#   3. apb $BENCH (required), the table rows matching $ROWS_MATCH (default: every table row but the header)
#   4. apb $E2E when set (e.g. a decode step), its table rows
# KERNEL is the file under src/Apb.Core/Backends/Cuda/Kernels (required). Everything lands in $OUT/variants.md (printed
# last) and $OUT/variants.tar.gz. decode_fp8_variants.sh is this script with the split-KV decode's defaults.
source "$(dirname "$0")/env.sh"
WORK=${WORK:-/tmp/apb-kernel-variants}
VARIANTS=${VARIANTS:-}
KERNEL=${KERNEL:?KERNEL: the kernel file, e.g. gemv.cu}
BENCH=${BENCH:?BENCH: the apb bench arguments, e.g. bench kernel gemv --lengths 1}
HEADERS=${HEADERS:-bf16.cuh}
TEST_FILTER=${TEST_FILTER:-}
PTXAS=${PTXAS:-.}
ROWS_MATCH=${ROWS_MATCH:-'^\| [^-]'}
E2E=${E2E:-}
K=src/Apb.Core/Backends/Cuda/Kernels
mkdir -p "$WORK"
unpack_binaries apb:publish/linux-x64/apb Apb.Gpu.Tests:publish/gpu-tests/Apb.Gpu.Tests
require_apb

hs=(); for h in $HEADERS; do hs+=("$K/$h"); done
require_knobs kernel_variants.sh "$K/$KERNEL" "${hs[@]}"

R=$OUT/variants.md
: > "$R"
for v in "${VS[@]}"; do
  defs=$(variant_defines "$v")
  src=$(variant_sources "$v")
  tag=$(echo "$v" | tr ',=;@/' '_-_~+')
  # APB_KERNEL_SOURCES for every apb and test run of this variant ('' : the embedded files)
  export APB_KERNEL_SOURCES=$src
  kfile=$K/$KERNEL; [ -n "$src" ] && [ -f "$src/$KERNEL" ] && kfile=$src/$KERNEL
  step "variant $v"
  if command -v nvcc >/dev/null; then
    IFS=',' read -ra DS <<< "$defs"
    opts=(); for d in "${DS[@]}"; do [ -n "$d" ] && opts+=("-D$d"); done
    timeout 180 nvcc -gencode=arch=compute_90a,code=sm_90a -cubin -o /tmp/kernel-variant.cubin -Xptxas -v "${opts[@]}" \
      ${src:+-I"$src"} -I"$K" "$kfile" > "$WORK/ptxas-$tag.txt" 2>&1
    echo "### $v: ptxas ($KERNEL, kernels matching $PTXAS)" >> "$R"
    grep -E "Compiling entry|registers|spill" "$WORK/ptxas-$tag.txt" | paste - - - | sed -E 's/ptxas info *: //g' \
      | grep -E "$PTXAS" >> "$R"
    # ptxas's wgmma warnings (C75xx: a product serialized, and why) say more about a Hopper variant than its registers
    grep -oE "C75[0-9]{2}[^)]*" "$WORK/ptxas-$tag.txt" | sort | uniq -c | sed 's/^/    /' >> "$R"
  fi
  if [ -n "$TEST_FILTER" ]; then
    require_gpu_tests
    APB_KERNEL_DEFINES="$defs" timeout "${TESTS_TIMEOUT:-240}" "$GPU_TESTS" --filter "$TEST_FILTER" --out "$WORK/tests-$tag.json" \
      > "$WORK/tests-$tag.txt" 2>&1
    echo "$v: GPU tests $TEST_FILTER exit $?: $(tail -1 "$WORK/tests-$tag.txt")" >> "$R"
    grep -E "FAIL" "$WORK/tests-$tag.txt" | head -10 >> "$R"
  fi
  # shellcheck disable=SC2086 # BENCH and E2E are command lines: split into their arguments on purpose
  APB_KERNEL_DEFINES="$defs" timeout "${BENCH_TIMEOUT:-150}" "$APB" $BENCH > "$WORK/bench-$tag.md" 2> "$WORK/bench-$tag.log"
  echo "$v: apb $BENCH exit $?" >> "$R"
  grep -E "$ROWS_MATCH" "$WORK/bench-$tag.md" | awk -v v="$v" '{ print "| " v " " $0 }' >> "$R"
  if [ -n "$E2E" ]; then
    # shellcheck disable=SC2086
    APB_KERNEL_DEFINES="$defs" timeout "${E2E_TIMEOUT:-200}" "$APB" $E2E > "$WORK/e2e-$tag.md" 2> "$WORK/e2e-$tag.log"
    echo "$v: apb $E2E exit $?" >> "$R"
    grep -E "$ROWS_MATCH" "$WORK/e2e-$tag.md" | awk -v v="$v" '{ print "| " v " " $0 }' >> "$R"
  fi
done
unset APB_KERNEL_SOURCES
tar -czf "$OUT/variants.tar.gz" -C "$WORK" .
step "done"
cat "$R"
