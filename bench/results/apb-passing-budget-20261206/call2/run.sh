#!/usr/bin/env bash
# Session 29, call 2 (#20, APB against Star on multi-key): the passing budget (docs/apb-algorithm.md 2.8) on run 12
# (models/embedded). First the GPU cases of the best-first selection and of a budgeted APB prefill (no host round
# trip), then multi-key at 64K on 8 ranks, 200 samples a task of seed 0 (run 12's call 3 samples: full/APB/Star there),
# with B = 1024 (2 l_p, the candidate named before the run), every task at 60 samples with it (paired with run 12's
# call 1 APB file), then B = 512 and 2048 on multi-key. Runs outside $OUT, back as runs.tgz.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
T0=$(date +%s)
source bench/gpu/env.sh
unpack_binaries
export RUNS=/tmp/s29/r2; rm -rf $RUNS; mkdir -p $RUNS
nvidia-smi --query-gpu=name --format=csv,noheader | tee -a $RUNS/times.txt
left() { echo $(( ${CALL_LIMIT:-592} - ($(date +%s) - T0) )); }
timeout 120 "$GPU_TESTS" --filter "best first,passing budget" --out $RUNS/gpu-tests.json > $RUNS/gpu-tests.txt 2>&1
echo "gpu tests rc=$?" | tee -a $RUNS/times.txt; tail -12 $RUNS/gpu-tests.txt
MK="--tasks niah_multikey_1,niah_multikey_2,niah_multikey_3 --samples 200 --length 64k --ranks 8 --strategies apb"
ruler_run mk-x8-64k-b1024 $(( $(left) - 10 )) $MK --passing-budget 1024
pack_runs
[ "$(left)" -gt 150 ] && ruler_run n-x8-64k-b1024 $(( $(left) - 10 )) --tasks all --samples 60 --length 64k --ranks 8 --strategies apb --passing-budget 1024
pack_runs
[ "$(left)" -gt 100 ] && ruler_run mk-x8-64k-b512 $(( $(left) - 8 )) $MK --passing-budget 512
pack_runs
[ "$(left)" -gt 100 ] && ruler_run mk-x8-64k-b2048 $(( $(left) - 6 )) $MK --passing-budget 2048
pack_runs
cat $RUNS/times.txt
