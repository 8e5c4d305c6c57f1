#!/usr/bin/env bash
# Compile-time variants of the split-KV decode (docs/kernels/decode-fp8.md, decode-mma.md) in one call: `bash
# bench/gpu/decode_fp8_variants.sh` from the repository root, binaries as for fp8.sh (.gpu/*.xz, unpacked there).
# kernel_variants.sh with the decode's defaults: KERNEL (default decode.cu, version 2; decode_mma.cu for version 3),
# VARIANTS (required; knobs of $KERNEL or fp8.cuh), TEST_FILTER (default fp8kv/decode; TESTS=0 skips the tests),
# PTXAS (default: the d128 split kernels of 4 and 8 pairs), and apb bench kernel decode --variants $ROWS at $LENGTHS:
# the bf16 kernel beside the fp8 ones, same build, same call (ROWS_MATCH: which table rows to keep; E2E as for
# kernel_variants.sh, e.g. a decode step). Results: $OUT/variants.md and $OUT/variants.tar.gz.
ROWS=${ROWS:-split-kv,split-kv-fp8,split-kv2-fp8}
LENGTHS=${LENGTHS:-16k,128k}
filter=${TEST_FILTER:-fp8kv/decode}
[ "${TESTS:-1}" = 1 ] || filter=
KERNEL=${KERNEL:-decode.cu} HEADERS="bf16.cuh fp8.cuh" TEST_FILTER=$filter PTXAS=${PTXAS:-"split_d128_p(4|8)(_pf)?(_fp8)?'"} \
  BENCH="bench kernel decode --variants $ROWS --lengths $LENGTHS" ROWS_MATCH=${ROWS_MATCH:-'^\| decode'} WORK=${WORK:-/tmp/apb-fp8-variants} \
  exec bash "$(dirname "$0")/kernel_variants.sh"
