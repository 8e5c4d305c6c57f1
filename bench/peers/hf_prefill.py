#!/usr/bin/env python3
"""Peer for `apb bench prefill`: Hugging Face transformers LlamaForCausalLM of the Llama-3.1-8B shape with random bf16
weights built on the GPU (meta-device init, to_empty, normal_(0, 0.02), norms 1), sdpa attention, one GPU. Prefill =
context + query through the model with the KV cache built (use_cache=True) and the last row's logits, synchronized.
Median of repeats (stopping early once a length's timed runs pass --repeat-budget seconds), peak memory per length.
Run on the GPU machine only (transformers and torch live there). Prints a markdown table; --out writes JSON."""
import argparse, json, sys, time

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

from peer_common import lengths


def build(args):
    rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}
    kw = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=args.layers,
              num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=1 << 21,
              rms_norm_eps=1e-5, tie_word_embeddings=False, hidden_act="silu")
    if int(transformers.__version__.split('.')[0]) >= 5:
        kw["rope_parameters"] = dict(rope, rope_theta=500000.0)
    else:
        kw.update(rope_theta=500000.0, rope_scaling=rope)
    config = LlamaConfig(**kw)
    config._attn_implementation = "sdpa"
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model = model.to_empty(device="cuda")
    torch.set_default_dtype(torch.float32)
    g = torch.Generator(device="cuda").manual_seed(args.seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=g)
        # to_empty leaves buffers uninitialized: the rotary frequencies are made again.
        model.model.rotary_emb = type(model.model.rotary_emb)(config=config, device="cuda")
    model.eval()
    return model, config


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", default="32k,64k,128k")
    ap.add_argument("--query", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--repeat-budget", type=float, default=0.0)
    ap.add_argument("--warmup-length", type=int, default=4096)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out")
    args = ap.parse_args()

    t0 = time.perf_counter()
    model, config = build(args)
    torch.cuda.synchronize()
    dev = torch.cuda.get_device_name(0)
    print(f"hf: {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters, transformers {transformers.__version__}, "
          f"torch {torch.__version__}, {dev}, attn {config._attn_implementation}, built in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr, flush=True)
    gen = torch.Generator(device="cuda").manual_seed(args.seed + 1)

    def prefill(n):
        ids = torch.randint(0, config.vocab_size, (1, n + args.query), device="cuda", generator=gen)
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.inference_mode():
            out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
            out.logits.float().cpu()
        torch.cuda.synchronize()
        secs = time.perf_counter() - t
        del out
        return secs

    prefill(args.warmup_length)
    results = []
    for n in lengths(args.lengths):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        runs = []
        try:
            for _ in range(max(1, args.repeats)):
                runs.append(prefill(n))
                if args.repeat_budget > 0 and sum(runs) >= args.repeat_budget:
                    break
            runs_sorted = sorted(runs)
            med = runs_sorted[len(runs) // 2] if len(runs) % 2 else (runs_sorted[len(runs) // 2 - 1] + runs_sorted[len(runs) // 2]) / 2
            r = dict(length=n, status="ok", seconds=med, seconds_runs=runs, tokens_per_s=(n + args.query) / med,
                     peak_gib=torch.cuda.max_memory_allocated() / 2**30)
        except torch.cuda.OutOfMemoryError as e:
            r = dict(length=n, status="oom", note=f"OOM: {str(e).splitlines()[0][:200]}", seconds_runs=runs)
        results.append(r)
        print(f"hf n={n}: {json.dumps(r)}", file=sys.stderr, flush=True)

    print(f"| peer | context | prefill s (median, runs) | tok/s | peak GiB |")
    print("|---|---|---|---|---|")
    for r in results:
        if r["status"] == "ok":
            print(f"| HF transformers sdpa, 1 GPU | {r['length']} | {r['seconds']:.3f} ({len(r['seconds_runs'])}) | {r['tokens_per_s']:.0f} | {r['peak_gib']:.1f} |")
        else:
            print(f"| HF transformers sdpa, 1 GPU | {r['length']} | {r['status']} | - | - |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(peer="hf_transformers_sdpa", device=dev, transformers=transformers.__version__, torch=torch.__version__,
                           layers=args.layers, query_tokens=args.query, results=results), f, indent=1)


if __name__ == "__main__":
    main()
