"""Makes the reference fixtures and the embedded default checkpoint with Hugging Face transformers.

Runs on the GPU machine (the only place torch/transformers exist); everything is computed on the CPU in float64 with
eager attention, because HF's fp32 on that GPU runs at TF32-like precision (1e-2 relative at 478 tokens), too loose to
catch real bugs. Output: one folder per checkpoint under OUT_DIR, each a normal HF model directory plus
  reference.json   {"prompt_ids": [...], "greedy_ids": [...], "prompt_text": "...", "vocab_size": V, ...}
  logits.f32       float32 little-endian [len(prompt_ids), V], HF's float64 logits rounded to fp32
Usage: python3 tools/make_fixtures.py OUT_DIR
"""
import json, math, os, pydoc, random, shutil, struct, sys

import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers, processors
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config, LlamaForCausalLM, Qwen2ForCausalLM, PreTrainedTokenizerFast

OUT = sys.argv[1]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
LLAMA3 = ("{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
          "message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")


def corpus():
    # Text that exists on a machine with no network: the docstrings of the standard library.
    import builtins, collections, itertools, functools, json as j, os as o, re, string, textwrap, typing, argparse, pathlib, datetime
    text = []
    for mod in [builtins, collections, itertools, functools, j, o, re, string, textwrap, typing, argparse, pathlib, datetime]:
        text.append(pydoc.render_doc(mod, renderer=pydoc.plaintext))
    return text


def make_tokenizer(vocab_size, llama_style):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    bos = tok.token_to_id("<|begin_of_text|>")
    if llama_style:
        tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                                           special_tokens=[("<|begin_of_text|>", bos)])
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", pad_token="<|endoftext|>")
        fast.chat_template = LLAMA3
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
        fast.chat_template = CHATML
    return fast


def rope_v4(cfg):
    """Rewrites a config dict into the transformers 4.x dialect (rope_theta + rope_scaling + torch_dtype)."""
    rp = cfg.pop("rope_parameters", None) or {}
    cfg["rope_theta"] = rp.get("rope_theta", cfg.get("rope_theta", 10000.0))
    scaling = {k: v for k, v in rp.items() if k != "rope_theta"}
    cfg["rope_scaling"] = None if scaling.get("rope_type", "default") == "default" else scaling
    if "dtype" in cfg:
        cfg["torch_dtype"] = cfg.pop("dtype")
    return cfg


def build(name, arch, tok, dtype, dialect, shard, prompt_len, greedy_len, seed, **kw):
    torch.manual_seed(seed)
    cls_cfg, cls_model = (LlamaConfig, LlamaForCausalLM) if arch == "llama" else (Qwen2Config, Qwen2ForCausalLM)
    rope = kw.pop("rope")
    common = dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    try:
        cfg = cls_cfg(rope_parameters=rope, **common, **kw)
    except TypeError:  # transformers 4.x
        scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
        cfg = cls_cfg(rope_theta=rope["rope_theta"], rope_scaling=None if scaling["rope_type"] == "default" else scaling, **common, **kw)
    model = cls_model(cfg).to(torch.float32).eval()
    # Larger init than HF's 0.02 so that logits are peaked and greedy choices are not near-ties.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.08)
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    model.to(dtype).save_pretrained(d, max_shard_size="200KB" if shard else "2GB")
    tok.save_pretrained(d)
    cpath = os.path.join(d, "config.json")
    c = json.load(open(cpath))
    if dialect == 4:
        c = rope_v4(c)
    json.dump(c, open(cpath, "w"), indent=2)
    # The reference comes from the checkpoint as written (reloaded), so the config dialect we wrote is what HF read.
    ref = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float64, attn_implementation="eager").eval()
    rng = random.Random(seed)
    text = open(__file__).read()[:4000]
    ids = tok(text)["input_ids"][:prompt_len]
    while len(ids) < prompt_len:
        ids.append(rng.randrange(len(tok)))
    with torch.no_grad():
        x = torch.tensor([ids])
        logits = ref(x).logits[0]
        # The reloaded model must be the model that wrote the files: else HF misread the config dialect we wrote.
        orig = model.to(torch.float64)
        orig.config._attn_implementation = "eager"
        drift = float((orig(x).logits[0] - logits).abs().max()) if dtype == torch.float32 else 0.0
        assert drift < 1e-9, f"{name}: reloaded checkpoint differs from the writer by {drift}"
        out = ref.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=greedy_len,
                           eos_token_id=None, pad_token_id=tok.pad_token_id)[0, len(ids):].tolist()
        # float64 margin between the best and second-best logit at each greedy step: fp32 must not flip a near-tie
        seq = torch.tensor([ids + out])
        lg = ref(seq).logits[0, len(ids) - 1:-1]
        top2 = lg.topk(2, dim=-1).values
        margin = float((top2[:, 0] - top2[:, 1]).min())
    with open(os.path.join(d, "logits.f32"), "wb") as f:
        f.write(logits.to(torch.float32).numpy().astype("<f4").tobytes())
    json.dump({"prompt_ids": ids, "greedy_ids": out, "prompt_text": text, "vocab_size": len(tok),
               "min_greedy_margin": margin, "transformers": transformers.__version__, "torch": torch.__version__,
               "made_by": "tools/make_fixtures.py (float64, CPU, eager attention)"},
              open(os.path.join(d, "reference.json"), "w"))
    chat = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Doc text.\n\nWhat is it?"},
            {"role": "assistant", "content": "A doc."}, {"role": "user", "content": "Thanks"}]
    rendered = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    json.dump({"messages": chat, "rendered": rendered, "rendered_ids": tok(rendered, add_special_tokens=False)["input_ids"]},
              open(os.path.join(d, "chat_reference.json"), "w"), indent=1)
    print(f"{name}: {sum(p.numel() for p in model.parameters())} params, dtype {dtype}, dialect {dialect}, "
          f"shards {len([f for f in os.listdir(d) if f.endswith('.safetensors')])}, greedy margin {margin:.3g}")


def main():
    os.makedirs(OUT, exist_ok=True)
    llama_tok = make_tokenizer(640, llama_style=True)
    qwen_tok = make_tokenizer(640, llama_style=False)
    build("llama-tiny", "llama", llama_tok, torch.float32, 4, False, 300, 24, 1,
          hidden_size=96, intermediate_size=200, num_hidden_layers=3, num_attention_heads=6, num_key_value_heads=2,
          max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=False,
          rope={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
    build("qwen2-tiny", "qwen2", qwen_tok, torch.bfloat16, 5, False, 300, 24, 2,
          hidden_size=80, intermediate_size=160, num_hidden_layers=2, num_attention_heads=5, num_key_value_heads=1,
          max_position_embeddings=4096, rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False,
          rope={"rope_type": "linear", "rope_theta": 1000000.0, "factor": 2.0})
    build("llama-headdim-sharded", "llama", llama_tok, torch.float16, 5, True, 200, 16, 3,
          hidden_size=64, intermediate_size=144, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
          head_dim=32, attention_bias=True, mlp_bias=True, max_position_embeddings=2048, rms_norm_eps=1e-5,
          tie_word_embeddings=False, rope={"rope_type": "default", "rope_theta": 500000.0})
    # The embedded default: random weights until the trained model of the accuracy issue replaces it.
    build("embedded-random", "qwen2", qwen_tok, torch.bfloat16, 4, False, 64, 8, 4,
          hidden_size=192, intermediate_size=512, num_hidden_layers=4, num_attention_heads=6, num_key_value_heads=2,
          max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False,
          rope={"rope_type": "default", "rope_theta": 1000000.0})


if __name__ == "__main__":
    main()
