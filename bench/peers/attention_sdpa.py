#!/usr/bin/env python3
"""Peer for `apb bench attention`: torch SDPA forward (causal, or --mask none), 32 query / 8 KV heads, d = 128, bf16, batch 1, with the
FLASH_ATTENTION (FlashAttention-2) and CUDNN_ATTENTION backends. TFLOP/s = 4 N^2 d heads / 2 over the CUDA-event median.
GQA goes through enable_gqa=True where the backend takes it, else K/V are expanded to 32 heads (same FLOPs).
Each row runs --warmup-ms of calls before it is timed (default 1000: the card's clock has settled under its power limit by
then; bench/results/attention-sustained-20261205). Run on the GPU machine only. Prints a markdown table; --out writes JSON."""
import argparse, json, sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from peer_common import lengths


def event_ms(fn):
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record(); fn(); b.record()
    b.synchronize()
    return a.elapsed_time(b)


def time_ms(fn, warmup, repeats, warmup_ms=0):
    # After the warm-up calls, more until warmup_ms of device time has run: the rows then see the clock a long call
    # settles at under the power limit, as `apb bench kernel --warmup-ms` (same default) does for ours.
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    warmed, n = 0.0, 0
    while warmed < warmup_ms and n < 1_000_000:
        warmed += event_ms(fn); n += 1
    ms = sorted(event_ms(fn) for _ in range(repeats))
    return ms[len(ms) // 2], ms[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", default="16k,64k,128k")
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--mask", choices=["causal", "none"], default="causal")
    ap.add_argument("--warmup-ms", type=int, default=1000,
                    help="device time to run each row's call before timing it (0: one warm-up call)")
    ap.add_argument("--out")
    args = ap.parse_args()
    causal = args.mask == "causal"
    h, kv, d = args.heads, args.kv_heads, args.head_dim
    results = []
    for n in lengths(args.lengths):
        g = torch.Generator(device="cuda").manual_seed(n)
        q = torch.randn(1, h, n, d, device="cuda", dtype=torch.bfloat16, generator=g)
        k = torch.randn(1, kv, n, d, device="cuda", dtype=torch.bfloat16, generator=g)
        v = torch.randn(1, kv, n, d, device="cuda", dtype=torch.bfloat16, generator=g)
        flops = 4.0 * n * n * d * h / (2 if causal else 1)
        for name, backend in (("flash (FA2)", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
            r = dict(backend=name, n=n, heads=h, kv_heads=kv, head_dim=d, mask=args.mask)
            for gqa in (True, False):
                try:
                    if gqa:
                        fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
                    else:
                        ke, ve = k.repeat_interleave(h // kv, dim=1), v.repeat_interleave(h // kv, dim=1)
                        fn = lambda: F.scaled_dot_product_attention(q, ke, ve, is_causal=causal)
                    with sdpa_kernel([backend]):
                        med, mn = time_ms(fn, 1, args.repeats, args.warmup_ms)
                    r.update(status="ok", gqa="enable_gqa" if gqa else "expanded", median_ms=med, min_ms=mn,
                             tflops=flops / (med * 1e-3) / 1e12)
                    break
                except Exception as e:  # a backend that refuses the shape
                    r.update(status="error", note=f"{type(e).__name__}: {str(e).splitlines()[0][:160]}")
            results.append(r)
            print(f"sdpa {json.dumps(r)}", file=sys.stderr, flush=True)
        del q, k, v
        torch.cuda.empty_cache()
    print("| kernel | N | heads q/kv | d | median ms | min ms | TFLOP/s |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        if r["status"] == "ok":
            print(f"| torch sdpa {r['backend']} ({r['gqa']}) | {r['n']} | {h}/{kv} | {d} | {r['median_ms']:.3f} | {r['min_ms']:.3f} | {r['tflops']:.1f} |")
        else:
            print(f"| torch sdpa {r['backend']} | {r['n']} | {h}/{kv} | {d} | error | - | {r.get('note', '')} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(peer="torch_sdpa", device=torch.cuda.get_device_name(0), torch=torch.__version__, warmup_ms=args.warmup_ms, results=results), f, indent=1)


if __name__ == "__main__":
    main()
