#!/usr/bin/env bash
# Compile-time variants of the split-KV decode (docs/kernels/decode-fp8.md, decode-mma.md) in one call: `bash
# bench/gpu/decode_fp8_variants.sh` from the repository root, binaries as for fp8.sh (.gpu/*.xz, unpacked here).
# KERNEL: the kernel file (default decode.cu, version 2; decode_mma.cu for version 3). Each entry of VARIANTS goes to
# NVRTC as -D options through APB_KERNEL_DEFINES; '-' is the committed kernel. ';' between variants, ',' between the
# NAME=VALUE defines of one, e.g. VARIANTS="-;DV2_FP8_U=8,DV2_FP8_VONCE=0". Each NAME must be an #ifndef- or
# #ifdef-guarded macro of $KERNEL or fp8.cuh (require_knobs in env.sh). Per variant:
#   1. ptxas -v of $KERNEL with those defines: registers and spills of the kernels matching $PTXAS (default: the d128
#      split kernels of 4 and 8 pairs), where nvcc is installed
#   2. the GPU tests $TEST_FILTER (default fp8kv/decode: correctness of that build against the CPU), unless TESTS=0
#   3. apb bench kernel decode --variants $ROWS at $LENGTHS: the bf16 kernel beside the fp8 ones, same build, same call
# Everything lands in $OUT/variants.md (printed last) and $OUT/fp8-variants.tar.gz.
source "$(dirname "$0")/env.sh"
WORK=${WORK:-/tmp/apb-fp8-variants}
LENGTHS=${LENGTHS:-16k,128k}
ROWS=${ROWS:-split-kv,split-kv-fp8,split-kv2-fp8}
VARIANTS=${VARIANTS:-}
TESTS=${TESTS:-1}
KERNEL=${KERNEL:-decode.cu}
TEST_FILTER=${TEST_FILTER:-fp8kv/decode}
PTXAS=${PTXAS:-"split_d128_p(4|8)(_pf)?(_fp8)?'"}
K=src/Apb.Core/Backends/Cuda/Kernels
mkdir -p "$WORK"
unpack_binaries apb:publish/linux-x64/apb Apb.Gpu.Tests:publish/gpu-tests/Apb.Gpu.Tests
require_apb

require_knobs decode_fp8_variants.sh "$K/$KERNEL" "$K/fp8.cuh"

R=$OUT/variants.md
: > "$R"
for v in "${VS[@]}"; do
  defs=$(variant_defines "$v")
  tag=$(echo "$v" | tr ',=;' '_-_')
  step "variant $v"
  if command -v nvcc >/dev/null; then
    IFS=',' read -ra DS <<< "$defs"
    opts=(); for d in "${DS[@]}"; do [ -n "$d" ] && opts+=("-D$d"); done
    timeout 180 nvcc -gencode=arch=compute_90a,code=sm_90a -cubin -o /tmp/decode-variant.cubin -Xptxas -v "${opts[@]}" \
      "$K/$KERNEL" > "$WORK/ptxas-$tag.txt" 2>&1
    echo "### $v: ptxas ($KERNEL, kernels matching $PTXAS)" >> "$R"
    grep -E "Compiling entry|registers|spill" "$WORK/ptxas-$tag.txt" | paste - - - | sed -E 's/ptxas info *: //g' \
      | grep -E "$PTXAS" >> "$R"
  fi
  if [ "$TESTS" = 1 ]; then
    require_gpu_tests
    APB_KERNEL_DEFINES="$defs" timeout 240 "$GPU_TESTS" --filter "$TEST_FILTER" --out "$WORK/tests-$tag.json" > "$WORK/tests-$tag.txt" 2>&1
    echo "$v: GPU tests $TEST_FILTER exit $?: $(tail -1 "$WORK/tests-$tag.txt")" >> "$R"
    grep -E "FAIL" "$WORK/tests-$tag.txt" | head -10 >> "$R"
  fi
  echo "| defines | kernel | variant | shape | median ms | min ms | runs | rate | of peak |" >> "$R"
  echo "|---|---|---|---|---|---|---|---|---|" >> "$R"
  APB_KERNEL_DEFINES="$defs" timeout 150 "$APB" bench kernel decode --variants "$ROWS" --lengths "$LENGTHS" \
    > "$WORK/bench-$tag.md" 2> "$WORK/bench-$tag.log"
  echo "bench exit $?" >> "$WORK/bench-$tag.log"
  grep "^| decode" "$WORK/bench-$tag.md" | sed "s/^/| $v /" >> "$R"
done
tar -czf "$OUT/fp8-variants.tar.gz" -C "$WORK" .
step "done"
cat "$R"
