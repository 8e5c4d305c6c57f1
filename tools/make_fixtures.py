"""Makes the reference fixtures and the embedded default checkpoint with Hugging Face transformers.

Runs on the GPU machine (the only place torch/transformers exist); everything is computed on the CPU in float64 with
eager attention, because HF's fp32 on that GPU runs at TF32-like precision (1e-2 relative at 478 tokens), too loose to
catch real bugs. Output: one folder per checkpoint under OUT_DIR, each a normal HF model directory plus
  reference.json   {"prompt_ids": [...], "greedy_ids": [...], "prompt_text": "...", "vocab_size": V, ...}
  logits.f32       float32 little-endian [len(prompt_ids), V], HF's float64 logits rounded to fp32
Usage: python3 tools/make_fixtures.py OUT_DIR [GROUP | NAME ...]
  groups: base (llama-tiny, qwen2-tiny, llama-headdim-sharded, embedded-random), families (qwen3-tiny,
  qwen3-yarn-tiny, mistral-tiny, yi-tiny, llama32-tiny, llama-dynamic-tiny); no argument makes both.
  The families reuse the committed tokenizers of tests/fixtures/models (llama-tiny, qwen2-tiny) and, for Mistral and Yi,
  train a small SentencePiece-style BPE tokenizer in their tokenizer.json shapes, so `base` need not run first.
"""
import json, math, os, pydoc, random, shutil, struct, sys

import torch
import transformers
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, decoders, trainers, processors
from transformers import (AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast,
                          LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM,
                          Qwen3Config, Qwen3ForCausalLM, MistralConfig, MistralForCausalLM)

OUT = sys.argv[1]
REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
ARCHS = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM),
         "qwen3": (Qwen3Config, Qwen3ForCausalLM), "mistral": (MistralConfig, MistralForCausalLM)}
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


def committed_tokenizer(name):
    """The tokenizer of a committed fixture (tests/fixtures/models/NAME), chat template included."""
    return AutoTokenizer.from_pretrained(os.path.join(REPO, "tests", "fixtures", "models", name))


def sp_tokenizer(shape):
    """A small SentencePiece-style BPE tokenizer in the tokenizer.json shape transformers writes for Llama-2 / Mistral
    (shape "mistral": Prepend + Replace normalizer, <s> added by a TemplateProcessing, Strip in the decoder) or for Yi
    (shape "yi": Replace only, no BOS, no Strip): byte fallback through <0x00>..<0xFF> tokens in the vocabulary, as
    the real files have. Trained on whole "▁word" pieces (a Metaspace split used for training only), then given
    the shape's pipeline, which has no pre-tokenizer."""
    specials = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never", split=True)
    tok.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=420, special_tokens=specials, limit_alphabet=80, show_progress=False))
    j = json.loads(tok.to_str())
    trained = [t for t, _ in sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1]) if t not in specials]
    order = specials + ["<0x%02X>" % b for b in range(256)] + trained
    j["model"]["vocab"] = {t: i for i, t in enumerate(order)}
    for a in j["added_tokens"]:
        a["id"] = order.index(a["content"])
    replace = {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}
    j["pre_tokenizer"] = None
    j["normalizer"] = {"type": "Sequence", "normalizers": ([{"type": "Prepend", "prepend": "\u2581"}] if shape == "mistral" else []) + [replace]}
    j["decoder"] = {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                                                     {"type": "ByteFallback"}, {"type": "Fuse"}]
                    + ([{"type": "Strip", "content": " ", "start": 1, "stop": 0}] if shape == "mistral" else [])}
    j["post_processor"] = None if shape == "yi" else {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    tok = Tokenizer.from_str(json.dumps(j))
    eos = "</s>" if shape == "mistral" else "<|im_end|>"
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token=eos, unk_token="<unk>", pad_token="<unk>")
    fast.chat_template = open(os.path.join(REPO, "tests", "fixtures", "chat_templates", shape + "_style.jinja")).read()
    sample = "Return the sum of a and b.\n\n  Indented: caf\u00e9 \u2264 \u4e2d\u6587!"
    ids = fast(sample)["input_ids"]
    assert (ids[0] == 1) == (shape == "mistral"), f"{shape}: BOS handling is wrong: {ids[:4]}"
    assert fast.decode(ids, skip_special_tokens=True) == sample, f"{shape}: round trip gave {fast.decode(ids, skip_special_tokens=True)!r}"
    assert any(order[i].startswith("<0x") for i in ids), f"{shape}: the sample should need byte fallback"
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
    cls_cfg, cls_model = ARCHS[arch]
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


def base():
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


def families():
    """The model families beyond Llama 3.x / Qwen2, each as small as covers what sets it apart (96 prompt tokens and 16
    greedy ones keep each folder small)."""
    llama_tok, qwen_tok = committed_tokenizer("llama-tiny"), committed_tokenizer("qwen2-tiny")
    # Qwen3: per-head q/k RMSNorm before RoPE; head_dim 32 given explicitly (not hidden / heads = 16), tied, no biases.
    build("qwen3-tiny", "qwen3", qwen_tok, torch.bfloat16, 5, False, 96, 16, 11,
          hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
          head_dim=32, max_position_embeddings=4096, rms_norm_eps=1e-6, tie_word_embeddings=True, attention_bias=False,
          use_sliding_window=False, rope={"rope_type": "default", "rope_theta": 1000000.0})
    # Qwen3 with YaRN as its long-context recipe sets it, scaled down (factor 4 = max_position_embeddings / original, so
    # every transformers version reads the same factor); head_dim 16 puts the ramp inside the 8 frequencies. f32 and
    # the 4.x dialect: the reload check proves transformers reads rope_scaling's yarn as written.
    build("qwen3-yarn-tiny", "qwen3", qwen_tok, torch.float32, 4, False, 96, 16, 12,
          hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
          head_dim=16, max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=True, attention_bias=False,
          use_sliding_window=False,
          rope={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 64})
    # Mistral: a sliding window of 24 under a 96-token prompt; its SentencePiece-style tokenizer.
    build("mistral-tiny", "mistral", sp_tokenizer("mistral"), torch.bfloat16, 5, False, 96, 16, 13,
          hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
          max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=False, sliding_window=24,
          rope={"rope_type": "default", "rope_theta": 1000000.0})
    # Yi: the Llama architecture with Yi's shape (GQA, theta 5e6) and its tokenizer's shape (no BOS, no Strip).
    build("yi-tiny", "llama", sp_tokenizer("yi"), torch.bfloat16, 4, False, 96, 16, 14,
          hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
          max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=False,
          rope={"rope_type": "default", "rope_theta": 5000000.0})
    # Llama 3.2 (1B/3B): tied embeddings and llama3 rope (factor 32), original length scaled down to 64 so the three
    # bands (kept, smoothed, divided) all occur at head_dim 16.
    build("llama32-tiny", "llama", llama_tok, torch.bfloat16, 5, False, 96, 16, 15,
          hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
          max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=True,
          rope={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
    # Dynamic NTK: max_position_embeddings 64 under a 96-token prompt and 16 greedy steps, so the prefill and every
    # decode step run with frequencies raised from their own length. f32, 4.x dialect (as dynamic checkpoints ship).
    build("llama-dynamic-tiny", "llama", llama_tok, torch.float32, 4, False, 96, 16, 16,
          hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
          max_position_embeddings=64, rms_norm_eps=1e-5, tie_word_embeddings=False,
          rope={"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0})


GROUPS = {"base": base, "families": families}


def main():
    os.makedirs(OUT, exist_ok=True)
    wanted = sys.argv[2:] or list(GROUPS)
    unknown = [w for w in wanted if w not in GROUPS]
    if unknown:
        sys.exit(f"unknown group(s) {unknown}: expected any of {list(GROUPS)}")
    for w in wanted:
        GROUPS[w]()


if __name__ == "__main__":
    main()
