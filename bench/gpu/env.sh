# Sourced first by every bench/gpu script: the settings every run on the GPU machine needs, in one place.
#   - NVLink multicast off for NCCL, torch and NVSHMEM (it can take the host's GPUs out of service there)
#   - the repository root as the working directory; APB = the published binary, OUT = where results go (the device
#     tool brings back what lands under its $OUT), both overridable
#   - the NVRTC kernel cache outside $OUT (only a few files come back from there; a fresh machine compiles once)
set -u
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
APB=${APB:-$ROOT/publish/linux-x64/apb}
OUT=${OUT:-$ROOT/.out}
mkdir -p "$OUT"
export APB_KERNEL_CACHE=${APB_KERNEL_CACHE:-/tmp/apb-kernel-cache}

# Stops the script when there is no binary to run.
require_apb() {
  [ -x "$APB" ] && return 0
  echo "no apb binary at $APB: publish it first (dotnet publish src/Apb.Cli -c Release -r linux-x64 -p:PublishAot=true -o publish/linux-x64)"
  exit 2
}
