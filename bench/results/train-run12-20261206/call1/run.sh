#!/usr/bin/env bash
# Session 28, call 1 (#20, the model bar): run 12 of the embedded model, run 11's recipe (run 9's mix and rate, every
# step at 64K, warm-started from run 9) for most of a call, with run 9's retaining heads kept (--heads-seconds 0:
# session 27's CPU check pointed at run 11's retrained heads for APB's loss on multi-value/-query). Then full attention
# and APB x8 at 64K on the kept weights, RULER's 60 samples a task of seed 0 (run 9's and run 11's samples, so `apb eval
# paired` pairs them). The runs' folder lives outside $OUT and comes back as runs.tgz (the device returns <= 8 files:
# train/ holds up to 6).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
T0=$(date +%s)
source bench/gpu/env.sh
unpack_binaries
nvidia-smi --query-gpu=name --format=csv,noheader
STEPS=train SECONDS_BUDGET=${SECONDS_BUDGET:-330} \
  LEN_FLAGS="--max-len 65536 --rope-scaling yarn:8:16384 --sel-lengths 16384,32768,65536" \
  EXTRA="--task-weights niah_multikey_2_shared=6 --lr 5e-5 --warmup 10 --start-len 65536 --heads-seconds 0" \
  bash bench/gpu/train.sh 2>&1 | grep -E "select step|training starts|retaining heads|== result|pack sha256|steps |lr decay|TIMED|FAILED|Error|error" | tail -40
export RUNS=/tmp/s28/r; rm -rf $RUNS; mkdir -p $RUNS
export MODEL=/tmp/apb-train/run/model
sha256sum $MODEL/model.safetensors $MODEL/retaining_heads.safetensors | tee $RUNS/times.txt
nvidia-smi --query-gpu=name --format=csv,noheader | tee -a $RUNS/times.txt
left() { echo $(( ${CALL_LIMIT:-590} - ($(date +%s) - T0) )); }
echo "left for RULER: $(left) s"
[ "$(left)" -gt 40 ] && ruler_run n-full-64k $(( $(left) - 10 )) --tasks all --samples 60 --length 64k --strategies full
pack_runs
[ "$(left)" -gt 40 ] && ruler_run n-x8-64k $(( $(left) - 8 )) --tasks all --samples 60 --length 64k --ranks 8 --strategies apb
pack_runs
cat $RUNS/times.txt
