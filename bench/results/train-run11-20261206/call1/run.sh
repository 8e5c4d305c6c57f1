#!/usr/bin/env bash
# Session 27, call 1 (#20, the model bar), train and measure in one call (this session's device time allows one cold
# start for both): run 11 of the embedded model, run 9's mix and rate with every step at 64K (the one recipe
# docs/notes/multikey-long-context.md lists as not tried), SECONDS_BUDGET s; then full attention at 64K (and 32K if the
# clock allows) on the weights the run kept, RULER's 60 samples a task of seed 0: the samples of run 9's
# bench/results/train-run9-20261205/call3 files, so `apb eval paired` pairs them.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
T0=$(date +%s)
source bench/gpu/env.sh
unpack_binaries
STEPS=train SECONDS_BUDGET=${SECONDS_BUDGET:-300} \
  LEN_FLAGS="--max-len 65536 --rope-scaling yarn:8:16384 --sel-lengths 16384,32768,65536" \
  EXTRA="--task-weights niah_multikey_2_shared=6 --lr 5e-5 --warmup 10 --start-len 65536" \
  bash bench/gpu/train.sh 2>&1 | grep -E "select step|training starts|== result|pack sha256|steps |lr decay|TIMED|FAILED|Error|error" | tail -30
RUNS=$OUT/r; mkdir -p $RUNS
export MODEL=/tmp/apb-train/run/model
sha256sum $MODEL/model.safetensors $MODEL/retaining_heads.safetensors | tee $RUNS/times.txt
nvidia-smi --query-gpu=name --format=csv,noheader | tee -a $RUNS/times.txt
left() { echo $(( ${CALL_LIMIT:-590} - ($(date +%s) - T0) )); }
echo "left for RULER: $(left) s"
[ "$(left)" -gt 40 ] && ruler_run n-full-64k $(( $(left) - 10 )) --tasks all --samples 60 --length 64k --strategies full
pack_runs
[ "$(left)" -gt 50 ] && ruler_run n-full-32k $(( $(left) - 8 )) --tasks all --samples 60 --length 32k --strategies full
pack_runs
cat $RUNS/times.txt
