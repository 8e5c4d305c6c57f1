#!/usr/bin/env bash
# Session 26, call 1. #19: the sustained bf16 GEMM rate (cuBLASLt) beside our bf16 causal attention on the same card,
# clocks and power sampled, both after 1 s of warm-up a row, two rounds in alternation: is 700 TFLOP/s of attention
# above what the card's own GEMM sustains? #20: the runs owed (docs/notes/multikey-long-context.md): balanced APB with
# the new default l_p against --passing 896 at 64K x8; APB --passing 256 against the default at 32K x8.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
source bench/gpu/env.sh
unpack_binaries
RUNS=$OUT/r; mkdir -p $RUNS
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm,memory.total --format=csv,noheader | tee $RUNS/gpu.txt
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv,noheader -lms 50 > $RUNS/clocks.csv &
SMI=$!
mark() { echo "MARK $(date +%H:%M:%S.%N | cut -c1-12) $*" >> $RUNS/marks.txt; }
k() { mark "start $*"; timeout 120 $APB bench kernel "$@" 2>>$RUNS/kernel.log | grep -E '^\| (gemm|attention)' | tee -a $RUNS/kernel.md; mark end; }
S=$(date +%s)
for i in 1 2; do
  k gemm --lengths 8192,16384 --out $RUNS/gemm-$i.json
  k attention --variants hopper --mask causal --lengths 16k,64k,128k --out $RUNS/attn-$i.json
done
kill $SMI
python3 bench/gpu/clock_summary.py $RUNS/clocks.csv $RUNS/marks.txt | tee $RUNS/clocks.md
echo "kernels $(( $(date +%s)-S )) s"
ruler_run bal-x8-64k 170 --tasks all --samples 60 --length 64k --ranks 8 --strategies apb-balanced
ruler_run bal-x8-64k-p896 170 --tasks all --samples 60 --length 64k --ranks 8 --strategies apb-balanced --passing 896
pack_runs
ruler_run apb-x8-32k-p256 110 --tasks all --samples 60 --length 32k --ranks 8 --strategies apb --passing 256
ruler_run apb-x8-32k 110 --tasks all --samples 60 --length 32k --ranks 8 --strategies apb
pack_runs
cat $RUNS/times.txt
