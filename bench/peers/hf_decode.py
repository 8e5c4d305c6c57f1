#!/usr/bin/env python3
"""Peer for `apb bench decode`: Hugging Face transformers LlamaForCausalLM of the Llama-3.1-8B shape with random bf16
weights (built as hf_prefill.py builds it), sdpa attention, one GPU. Per context length: a random prompt prefilled into
the cache (not timed), then --warmup untimed and --tokens timed greedy steps; a step is one token through the model with
the cache, the argmax of its logits, and .item() (which waits for the GPU), timed by perf_counter. Median ms/token.
The cache is HF's default DynamicCache (whose per-step torch.cat copies the cache).
The floor is apb bench decode's: bf16 weights except the embedding table plus the whole KV cache, at --bandwidth-tbs.
Run on the GPU machine only. Prints a markdown table; --out writes JSON with apb bench decode's result fields."""
import argparse, json, statistics, sys, time

import torch
import transformers

from hf_prefill import build  # the same random 8B-shape model as the prefill peer
from peer_common import lengths


def floor_ms(config, params, n, bandwidth_tbs):
    c = config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    weights = 2 * (params - (0 if c.tie_word_embeddings else c.vocab_size * c.hidden_size))
    kv = 2 * c.num_hidden_layers * n * c.num_key_value_heads * head_dim * 2
    return (weights + kv) / (bandwidth_tbs * 1e12) * 1e3


def run_context(model, config, n, args, gen):
    ids = torch.randint(0, config.vocab_size, (1, n), device="cuda", generator=gen)
    steps = args.warmup + args.tokens
    torch.cuda.synchronize()
    t = time.perf_counter()
    with torch.inference_mode():
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        nxt.item()
    prefill_s = time.perf_counter() - t
    del out
    ms = []
    with torch.inference_mode():
        for i in range(steps):
            torch.cuda.synchronize()
            t = time.perf_counter()
            out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            nxt.item()  # greedy decoding needs the token on the host: waits for the GPU
            if i >= args.warmup:
                ms.append((time.perf_counter() - t) * 1e3)
            cache = out.past_key_values
            del out
    return prefill_s, ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--contexts", default="32k,128k")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--bandwidth-tbs", type=float, default=4.3)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out")
    args = ap.parse_args()

    t0 = time.perf_counter()
    model, config = build(args)
    params = sum(p.numel() for p in model.parameters())
    torch.cuda.synchronize()
    dev = torch.cuda.get_device_name(0)
    print(f"hf decode: {params / 1e9:.2f}B parameters, transformers {transformers.__version__}, "
          f"torch {torch.__version__}, {dev}, attn {config._attn_implementation}, cache dynamic, built in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr, flush=True)
    gen = torch.Generator(device="cuda").manual_seed(args.seed + 1)
    results = []
    for n in lengths(args.contexts):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        fl = floor_ms(config, params, n, args.bandwidth_tbs)
        try:
            prefill_s, ms = run_context(model, config, n, args, gen)
            med = statistics.median(ms)
            r = dict(context=n, attention="sdpa, dynamic cache", status="ok", floor_ms=fl, ms_per_token=med, ms_runs=ms,
                     tokens_per_s=1000 / med, floor_fraction=fl / med, prefill_s=prefill_s,
                     peak_gib=torch.cuda.max_memory_allocated() / 2**30)
        except torch.cuda.OutOfMemoryError as e:
            r = dict(context=n, attention="sdpa, dynamic cache", status="oom", floor_ms=fl,
                     note=f"OOM: {str(e).splitlines()[0][:200]}")
        except Exception as e:  # an API difference between transformers versions must not lose the other lengths
            r = dict(context=n, attention="sdpa, dynamic cache", status="error", floor_ms=fl,
                     note=f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
        results.append(r)
        print(f"hf decode n={n}: {json.dumps({k: v for k, v in r.items() if k != 'ms_runs'})}", file=sys.stderr, flush=True)

    print("| engine | attention | context | ms/token (median) | min | tok/s | floor ms | floor fraction | prefill s | peak GiB | note |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if r["status"] == "ok":
            print(f"| HF transformers | {r['attention']} | {r['context']} | {r['ms_per_token']:.2f} | {min(r['ms_runs']):.2f} | "
                  f"{r['tokens_per_s']:.1f} | {r['floor_ms']:.2f} | {r['floor_fraction']:.2f} | {r['prefill_s']:.2f} | {r['peak_gib']:.1f} | |")
        else:
            print(f"| HF transformers | {r['attention']} | {r['context']} | {r['status']} | - | - | {r['floor_ms']:.2f} | - | - | - | {r.get('note', '')} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(engine="hf_transformers_sdpa", device=dev, transformers=transformers.__version__, torch=torch.__version__,
                           cache="dynamic", layers=args.layers, tokens=args.tokens, warmup=args.warmup,
                           bandwidth_tbs=args.bandwidth_tbs, results=results), f, indent=1)


if __name__ == "__main__":
    main()
