#!/usr/bin/env bash
# Session 30, call 5 (#20): what costs APB multikey_3 at 32K on 8 ranks (71.7 against full's and Star's 78.3 on seed 0)?
# One task, 200 samples, seed 2 (not the seed the tables report), run 12: full, Star and default APB in one run, then
# APB with one setting changed per run. Runs outside $OUT, back as runs.tgz.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
T0=$(date +%s)
source bench/gpu/env.sh
unpack_binaries
export RUNS=/tmp/s30/r5; rm -rf $RUNS; mkdir -p $RUNS
nvidia-smi --query-gpu=name --format=csv,noheader | tee -a $RUNS/times.txt
left() { echo $(( ${CALL_LIMIT:-190} - ($(date +%s) - T0) )); }
MK3="--tasks niah_multikey_3 --samples 200 --length 32k --ranks 8 --seed 2"
ruler_run mk3-x8-32k $(( $(left) - 5 )) $MK3 --strategies full,star,apb
pack_runs
i=0
for v in "anchor-query:--anchor-query false" "budget0:--passing-budget 0" "budget512:--passing-budget 512" "from1:--passing-from-layer 1" \
         "novelty0:--novelty-weight 0" "query:--scorer query" "passing128:--passing 128"; do
  name=mk3-x8-32k-${v%%:*}
  [ "$(left)" -gt 25 ] && ruler_run $name $(( $(left) - 3 )) $MK3 --strategies apb ${v#*:}
  pack_runs
done
cat $RUNS/times.txt
