#!/usr/bin/env bash
# Multi-GPU check on the 2-GPU machine (`bash bench/gpu/multi_gpu.sh` from the repository root, with the Native AOT
# binary published here beforehand into publish/linux-x64). Each step is bounded by a timeout.
#   1. references: full attention on one GPU (`logits --device cuda`), and on the CPU every strategy with 2 in-process ranks
#   2. `apb launch --nproc-per-node 2 -- logits ... --strategy S --device cuda` for ring, zigzag, ulysses, star, apb,
#      apb-balanced: exact ones against the CPU's full attention, star/apb/apb-balanced against the CPU's same strategy. Tolerance: relative error
#      <= 5e-2, the fixed limit `apb check-kernels` sets for a model's bf16 GPU logits against the fp32 CPU (its "models"
#      step); one GPU's full attention must meet it too, so a broken single-GPU path fails instead of widening the bound
#   3. faults: (a) rank 1 stalls and is killed with SIGKILL: the launcher must stop rank 0 and name rank 1 within 60 s;
#      (b) rank 1 stalls: rank 0's collective must time out (--collective-timeout 15), abort NCCL and fail within 60 s
#   4. multi-node path: two launchers with --nnodes 2 (one GPU each, NCCL over sockets) must equal one node with 2 GPUs
# Logs and JSON go to $OUT (at most 8 files come back) and bench/results/multi-gpu-<stamp>/; a short table is printed last.
source "$(dirname "$0")/env.sh"

STAMP=$(date -u +%Y%m%d-%H%M%S)
RES=${RES:-$ROOT/bench/results/multi-gpu-$STAMP}
WORK=$(mktemp -d /tmp/apb-multi-gpu.XXXX)   # logits files: too many to come back one by one
mkdir -p "$OUT" "$RES"
LOG="$OUT/multi-gpu.log"
MODEL=${MODEL:-tests/fixtures/models/llama-tiny}
# 191 context tokens (odd: the plans pad and split unevenly) and a short query (exercises the star phase on the GPUs).
IDS=$(awk 'BEGIN{for(i=0;i<191;i++){printf "%s%d", (i?",":""), (i*37+11)%640}}')
QUERY=" the end of it"
COMMON=(--model "$MODEL" --ids "$IDS" --query "$QUERY")
STRATS=(ring zigzag ulysses star apb apb-balanced)
extra() { case $1 in apb|apb-balanced) echo "--anchor 32 --passing 16";; *) echo "";; esac; }

require_apb
status=0
declare -A ROW

step "nvidia-smi"
timeout 30 nvidia-smi --query-gpu=index,name,driver_version,memory.used --format=csv 2>&1 | tee -a "$LOG"
timeout 30 nvidia-smi topo -m 2>&1 | tee -a "$LOG"

step "reference: full attention, one GPU"
timeout 120 "$APB" logits "${COMMON[@]}" --device cuda --out "$WORK/gpu1-full.json" >>"$LOG" 2>&1 || { echo "single-GPU reference failed"; status=1; }
step "reference: CPU, full and every strategy with 2 in-process ranks"
timeout 60 "$APB" logits "${COMMON[@]}" --device cpu --out "$WORK/cpu-full.json" >>"$LOG" 2>&1 || status=1
for s in "${STRATS[@]}"; do
  timeout 60 "$APB" logits "${COMMON[@]}" --strategy $s --ranks 2 --fallback-below 0 $(extra $s) --device cpu --out "$WORK/cpu-$s.json" >>"$LOG" 2>&1 || status=1
done
TOL=5e-2   # check-kernels' model-logits limit (bf16 on the GPU vs fp32 on the CPU); fixed, not scaled by any measurement
BASE=$(python3 tools/compare_logits.py --json "$WORK/cpu-full.json" "$WORK/gpu1-full.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rel"])' 2>/dev/null || echo nan)
if python3 -c "import sys; sys.exit(0 if float('$BASE') <= $TOL else 1)"; then verdict=ok; else verdict=FAIL; status=1; fi
echo "one GPU vs CPU (full): rel $BASE; tolerance $TOL: $verdict" | tee -a "$LOG"
ROW[gpu1]="full, one GPU|vs cpu full: rel $BASE|-|tol $TOL|-|$verdict"

for s in "${STRATS[@]}"; do
  step "apb launch --nproc-per-node 2 -- logits --strategy $s"
  ts=$(date +%s.%N)
  timeout 180 "$APB" launch --nproc-per-node 2 --timeout 150 --collective-timeout 60 -- logits "${COMMON[@]}" \
    --strategy $s --ranks 2 --fallback-below 0 $(extra $s) --device cuda --timings --out "$WORK/gpu2-$s.json" >>"$LOG" 2>&1
  rc=$?; secs=$(python3 -c "print(f'{$(date +%s.%N)-$ts:.1f}')")
  case $s in star|apb|apb-balanced) ref="$WORK/cpu-$s.json"; refname="cpu $s";; *) ref="$WORK/cpu-full.json"; refname="cpu full";; esac
  if [ $rc -ne 0 ]; then ROW[$s]="$s|launch rc=$rc|-|-|-|${secs}s|FAIL"; status=1; continue; fi
  c1=$(python3 tools/compare_logits.py --json "$ref" "$WORK/gpu2-$s.json"); c2=$(python3 tools/compare_logits.py --json "$WORK/gpu1-full.json" "$WORK/gpu2-$s.json")
  echo "$s vs $refname: $c1; vs one GPU full: $c2" | tee -a "$LOG"
  ROW[$s]=$(python3 - "$s" "$refname" "$c1" "$c2" "$TOL" "$secs" <<'PY'
import json, sys
s, refname, c1, c2, tol, secs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
ok = "rel" in c1 and c1["rel"] <= tol
print(f"{s}|vs {refname}: rel {c1.get('rel', float('nan')):.2e}, argmax {c1.get('argmax_agree', 0):.3f}|vs 1-GPU full: rel {c2.get('rel', float('nan')):.2e}|tol {tol:.2e}|{secs}s|{'ok' if ok else 'FAIL'}")
PY
)
  [[ ${ROW[$s]} == *"|ok" ]] || status=1
done

multi_node() {
  # Issue #5's multi-node path on one machine: two launcher invocations, --nnodes 2, one GPU each, rendezvous over
  # loopback, NCCL with P2P and shared memory disabled so it takes its socket transport. Must equal one node with 2 GPUs.
  step "multi-node: 2 launchers x 1 GPU, --nnodes 2, NCCL sockets (zigzag)"
  local port=$((29500 + RANDOM % 400)) ts rc secs
  ts=$(date +%s.%N)
  ( export CUDA_VISIBLE_DEVICES=1 NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1
    timeout 180 "$APB" launch --nnodes 2 --node-rank 1 --nproc-per-node 1 --master-addr 127.0.0.1 --master-port $port --timeout 150 \
      --collective-timeout 60 -- logits "${COMMON[@]}" --strategy zigzag --ranks 2 --fallback-below 0 --device cuda \
      --out "$WORK/nnodes-node1.json" >"$WORK/nnodes-node1.log" 2>&1 ) &
  local other=$!
  CUDA_VISIBLE_DEVICES=0 NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1 timeout 180 "$APB" launch --nnodes 2 --node-rank 0 --nproc-per-node 1 \
    --master-addr 127.0.0.1 --master-port $port --timeout 150 --collective-timeout 60 -- logits "${COMMON[@]}" --strategy zigzag \
    --ranks 2 --fallback-below 0 --device cuda --out "$WORK/nnodes.json" >"$WORK/nnodes-node0.log" 2>&1
  rc=$?; wait $other; local rc1=$?
  secs=$(python3 -c "print(f'{$(date +%s.%N)-$ts:.1f}')")
  cat "$WORK/nnodes-node0.log" "$WORK/nnodes-node1.log" >>"$LOG"
  if [ $rc -eq 0 ] && [ $rc1 -eq 0 ] && [ -f "$WORK/gpu2-zigzag.json" ]; then
    local c; c=$(python3 tools/compare_logits.py --json "$WORK/gpu2-zigzag.json" "$WORK/nnodes.json")
    echo "nnodes 2 vs one node x2 (zigzag): $c" | tee -a "$LOG"
    local ok; ok=$(python3 -c "import json,sys; c=json.loads(sys.argv[1]); print('ok' if c.get('rel', 1) <= 1e-6 else 'FAIL')" "$c")
    ROW[nnodes]="multi-node (2 x 1 GPU, sockets)|vs one node: rel $(python3 -c "import json,sys; print(json.loads(sys.argv[1]).get('rel'))" "$c")|-|identical|${secs}s|$ok"
    [ "$ok" = ok ] || status=1
  else ROW[nnodes]="multi-node (2 x 1 GPU, sockets)|node 0 rc=$rc, node 1 rc=$rc1|-|-|${secs}s|FAIL"; status=1; fi
}

fault_kill() {
  step "fault: rank 1 stalls, then SIGKILL; the launcher must stop rank 0 and name rank 1"
  local log="$WORK/fault-kill.log" ts pid rc secs
  APB_TEST_STALL_RANK=1 timeout 120 "$APB" launch --nproc-per-node 2 --collective-timeout 300 -- logits "${COMMON[@]}" \
    --strategy ring --ranks 2 --device cuda >"$log" 2>&1 &
  local launcher=$!
  for _ in $(seq 600); do grep -q "stalling" "$log" && break; sleep 0.1; done
  pid=$(sed -n 's/^\[launch\] rank 1: pid \([0-9]*\).*/\1/p' "$log")
  ts=$(date +%s.%N)
  [ -n "$pid" ] && kill -9 "$pid"
  wait $launcher; rc=$?
  secs=$(python3 -c "print(f'{$(date +%s.%N)-$ts:.1f}')")
  cat "$log" >>"$LOG"
  if [ $rc -ne 0 ] && grep -q "error: rank 1 exited with code 137" "$log" && python3 -c "import sys; sys.exit(0 if $secs < 60 else 1)"; then
    ROW[fault-kill]="fault: kill rank 1|launcher rc=$rc, names rank 1|-|-|${secs}s|ok"
  else ROW[fault-kill]="fault: kill rank 1|launcher rc=$rc ($(grep -m1 '^error' "$log"))|-|-|${secs}s|FAIL"; status=1; fi
}
fault_timeout() {
  step "fault: rank 1 stalls; rank 0's collective must time out, abort NCCL and fail"
  local log="$WORK/fault-timeout.log" ts rc secs
  ts=$(date +%s.%N)
  APB_TEST_STALL_RANK=1 timeout 120 "$APB" launch --nproc-per-node 2 --timeout 100 --collective-timeout 15 -- logits "${COMMON[@]}" \
    --strategy ring --ranks 2 --device cuda >"$log" 2>&1
  rc=$?
  secs=$(python3 -c "print(f'{$(date +%s.%N)-$ts:.1f}')")
  cat "$log" >>"$LOG"
  if [ $rc -ne 0 ] && grep -q "timed out after 15 s" "$log" && grep -q "error: rank 0 exited" "$log" && python3 -c "import sys; sys.exit(0 if $secs < 60 else 1)"; then
    ROW[fault-timeout]="fault: rank 1 stalls|rank 0 timed out, aborted, launcher rc=$rc|-|-|${secs}s|ok"
  else ROW[fault-timeout]="fault: rank 1 stalls|rc=$rc ($(grep -m1 'error' "$log" | cut -c1-120))|-|-|${secs}s|FAIL"; status=1; fi
}
multi_node
fault_kill
fault_timeout
step "processes left (must be none)"
pgrep -a -f "$APB" | grep -v pgrep | tee -a "$LOG" || echo "none" | tee -a "$LOG"

{
  echo "| check | result | vs one GPU | tolerance | time | verdict |"
  echo "|---|---|---|---|---|---|"
  for k in gpu1 "${STRATS[@]}" nnodes fault-kill fault-timeout; do echo "|${ROW[$k]:-$k|not run|-|-|-|FAIL}|"; done
} > "$OUT/table.md"
tar czf "$OUT/logits.tar.gz" -C "$WORK" . 2>/dev/null
cp "$OUT"/* "$RES/" 2>/dev/null
echo
echo "== multi-GPU: $MODEL, 191 context + query tokens, 2 ranks ($(nvidia-smi --query-gpu=name --format=csv,noheader | head -1) x2)"
cat "$OUT/table.md"
exit $status
