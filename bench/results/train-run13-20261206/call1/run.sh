#!/usr/bin/env bash
# Session 29, call 1 (#20, the model bar): run 13 of the embedded model, run 12's recipe (run 9's mix at lr 5e-5, every
# step at 64K, retaining heads kept) warm-started from run 12 (models/embedded), for most of a call, with selections
# every 90 s instead of 35 (run 12 spent 58 s on five). Then full attention at 64K on the kept weights, RULER's 60
# samples a task of seed 0 (run 12's samples, so `apb eval paired` pairs them). Runs outside $OUT, back as runs.tgz.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
T0=$(date +%s)
source bench/gpu/env.sh
unpack_binaries
nvidia-smi --query-gpu=name --format=csv,noheader
STEPS=train SECONDS_BUDGET=${SECONDS_BUDGET:-390} \
  LEN_FLAGS="--max-len 65536 --rope-scaling yarn:8:16384 --sel-lengths 16384,32768,65536" \
  EXTRA="--task-weights niah_multikey_2_shared=6 --lr 5e-5 --warmup 10 --start-len 65536 --heads-seconds 0 --eval-every 90" \
  bash bench/gpu/train.sh 2>&1 | grep -E "select step|training starts|retaining heads|== result|pack sha256|steps |lr decay|TIMED|FAILED|Error|error" | tail -40
export RUNS=/tmp/s29/r; rm -rf $RUNS; mkdir -p $RUNS
export MODEL=/tmp/apb-train/run/model
sha256sum $MODEL/model.safetensors $MODEL/retaining_heads.safetensors | tee $RUNS/times.txt
nvidia-smi --query-gpu=name --format=csv,noheader | tee -a $RUNS/times.txt
left() { echo $(( ${CALL_LIMIT:-592} - ($(date +%s) - T0) )); }
echo "left for RULER: $(left) s"
[ "$(left)" -gt 100 ] && ruler_run n-full-64k $(( $(left) - 6 )) --tasks all --samples 60 --length 64k --strategies full
pack_runs
cat $RUNS/times.txt
