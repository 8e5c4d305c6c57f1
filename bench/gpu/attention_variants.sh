#!/usr/bin/env bash
# Compile-time variants of the Hopper attention kernel in one call (`bash bench/gpu/attention_variants.sh` on the GPU
# machine, binaries as for decode.sh): kernel_variants.sh with the attention's defaults. VARIANTS is required (';'
# between variants, ',' between the NAME=VALUE defines of one, '-' for the committed kernel); each NAME must be an
# #ifndef- or #ifdef-guarded macro of attention_hopper.cu, and the committed kernel has none now: add the knob there
# first. Per variant: ptxas -v of the d128 kernels, the GPU tests of TEST_FILTER when set (e.g. attention/), and apb
# bench kernel attention --variants hopper at LENGTHS (default 16k,128k) with MASK (causal, the default; none or both).
# Results: $OUT/variants.md and $OUT/variants.tar.gz. A profile of a variant: bench/gpu/profile.sh with
# APB_KERNEL_DEFINES set. (The HOP_SERIAL / HOP_PINGPONG / HOP_FAST_EXP / HOP_DEFER_PV / HOP_STAGES rows in
# bench/results/cuda-20261128-hopper/variants-*.md come from kernel versions never committed.)
LENGTHS=${LENGTHS:-16k,128k}
MASK=${MASK:-causal}
KERNEL=attention_hopper.cu PTXAS=${PTXAS:-"attention_hopper_(chunk_)?d128"} ROWS_MATCH='^\| attention' \
  BENCH="bench kernel attention --variants hopper --mask $MASK --lengths $LENGTHS --repeats 5" WORK=${WORK:-/tmp/apb-attention-variants} \
  exec bash "$(dirname "$0")/kernel_variants.sh"
