# Session 23, call 8 (inline command, from the repository root with .gpu/ carried; .gpu/cb/attention_hopper.cu is
# the committed text of this folder's README):
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1; KERNEL=attention_hopper.cu BENCH_TIMEOUT=80 PTXAS=hopper_d128 BENCH="bench kernel attention --variants hopper --mask both --lengths 16k,32k,64k,128k" VARIANTS="-;HOP_CLUSTER=1,@.gpu/cb" timeout 300 bash bench/gpu/kernel_variants.sh
