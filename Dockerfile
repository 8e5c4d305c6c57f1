# apb in a container: the Native AOT binary with the embedded model beside it, on NVIDIA's CUDA runtime image (which
# carries the libraries apb loads at run time: libcuda comes from the host's driver through the NVIDIA container
# toolkit; libnvrtc, libcublasLt and libnccl from the image).
#
#   docker build -t apb .
#   docker run --rm --gpus all apb doctor
#   docker run --rm --gpus all -p 8000:8000 -v /models:/models apb serve /models/Llama-3.1-8B-Instruct --device cuda --host 0.0.0.0
#   docker run --rm --gpus all apb generate            # the embedded demo (CPU)

# ---- build: the .NET 10 SDK publishes apb with Native AOT for linux-x64 (clang and zlib are the AOT linker's needs)
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
RUN apt-get update && apt-get install -y --no-install-recommends clang zlib1g-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Directory.Build.props Apb.slnx ./
COPY src/ src/
COPY models/embedded/ models/embedded/
RUN dotnet publish src/Apb.Cli/Apb.Cli.csproj -c Release -r linux-x64 -p:PublishAot=true -o /out \
 && rm -f /out/*.dbg

# ---- run: CUDA 12 runtime libraries and NCCL 2, no SDK
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04
COPY --from=build /out/ /opt/apb/
ENV PATH=/opt/apb:$PATH
# Kernels compiled by NVRTC are cached here; mount a volume to keep them between containers.
ENV APB_KERNEL_CACHE=/var/cache/apb/kernels
EXPOSE 8000
ENTRYPOINT ["apb"]
CMD ["--help"]
