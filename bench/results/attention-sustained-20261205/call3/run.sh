#!/usr/bin/env bash
# Session 23, call 3: is bf16 causal's 16K lead over 64K/128K the clock of a short burst? The same kernel at 16K with the
# default 20 repeats and with 400 (seconds of load), and at 64K with 5 and 40, the SM clock and power sampled throughout.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export APB_KERNEL_SOURCES=.gpu/6296e1c
source bench/gpu/env.sh
unpack_binaries apb:publish/linux-x64/apb
APB=publish/linux-x64/apb
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm --format=csv,noheader
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv,noheader -lms 20 > $OUT/clocks.csv &
SMI=$!
mark() { echo "MARK $(date +%H:%M:%S.%N | cut -c1-12) $*" | tee -a $OUT/marks.txt; }
b() { mark "start $*"; $APB bench kernel attention --variants hopper "$@" 2>>$OUT/bench.log | grep -E '^\|' | tail -n 2 | tee -a $OUT/bench.md; mark "end"; sleep 2; }
sleep 2
b --mask causal --lengths 16k
b --mask causal --lengths 16k --repeats 400
b --mask causal --lengths 16k
b --mask causal --lengths 64k
b --mask causal --lengths 64k --repeats 40
b --mask causal --lengths 16k --repeats 400
kill $SMI
python3 - $OUT/clocks.csv $OUT/marks.txt <<'PY'
import sys, datetime
rows=[l.strip().split(', ') for l in open(sys.argv[1]) if l.count(',')>=3]
def t(s): return datetime.datetime.strptime(s.split(' ')[-1][:12], '%H:%M:%S.%f')
samples=[(t(r[0]), float(r[1].split()[0]), float(r[2].split()[0])) for r in rows if 'MHz' in r[1]]
marks=[l.split(None,3) for l in open(sys.argv[2])]
for i in range(0,len(marks)-1,2):
    a=t(marks[i][2]); z=t(marks[i+1][2]); s=[x for x in samples if a<=x[0]<=z]
    busy=[x for x in s if x[2]>200]
    if busy: print(f"{marks[i][3].strip():50s} samples {len(busy):4d} SM MHz mean {sum(x[1] for x in busy)/len(busy):6.0f} min {min(x[1] for x in busy):5.0f}  W mean {sum(x[2] for x in busy)/len(busy):5.0f} max {max(x[2] for x in busy):5.0f}")
    else: print(marks[i][3].strip(), "no busy samples", len(s))
PY
