#!/usr/bin/env bash
# Session 23, call 2: run 10 (run 9 + the look-alike multikey_3 task at weight 2, 5e-5), then full attention at 60 samples.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export APB_KERNEL_SOURCES=.gpu/6296e1c
nvidia-smi --query-gpu=name --format=csv,noheader
source bench/gpu/env.sh
STEPS=train SECONDS_BUDGET=370 LEN_FLAGS="--max-len 65536 --rope-scaling yarn:8:16384 --sel-lengths 16384,32768,65536" \
  EXTRA="--task-weights niah_multikey_2_shared=6,niah_multikey_3_prefix=2 --lr 5e-5 --warmup 10 --start-len 16384" \
  bash bench/gpu/train.sh > $OUT/train-call.log 2>&1
echo "train rc=$? at $SECONDS s"; tail -n 30 $OUT/train/train.log | grep -i -e select -e best -e kept -e step | tail -12
python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print("best", m.get("best"))' $OUT/train/metrics.json
R=/tmp/r10; rm -rf $R; mkdir -p $R
cat $OUT/train/model.tar.part-* | tar x -C $R || exit 1
sha256sum $R/model/*.safetensors models/embedded/*.safetensors
if cmp -s $R/model/model.safetensors models/embedded/model.safetensors; then echo "kept run 9's weights: no eval"; exit 0; fi
cp $R/model/model.safetensors $R/model/retaining_heads.safetensors models/embedded/
APB=publish/linux-x64/apb
mkdir -p $OUT/eval
for L in 32k 64k; do
  t=$SECONDS
  timeout 100 $APB eval ruler --model models/embedded --device cuda --tasks all --samples 60 --length $L --ranks 4 --strategies full --json $OUT/eval/full-x4-$L.json > $OUT/eval/full-x4-$L.md 2> $OUT/eval/full-x4-$L.log
  echo "eval $L rc=$? $((SECONDS - t)) s"; grep -F '**mean**' $OUT/eval/full-x4-$L.md
done
sha256sum models/embedded/*.safetensors > $OUT/eval/model-sha.txt
tar -czf $OUT/eval.tgz -C $OUT eval && rm -rf $OUT/eval
echo "done at $SECONDS s"
