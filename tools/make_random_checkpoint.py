"""Writes a random-weight Llama checkpoint of a chosen size (bf16) with the embedded model's tokenizer, for CPU speed
measurements. Standard library only. Values are bf16 with random sign and magnitude in [2^-7, 2^-5); norms are 1.
Usage: python3 tools/make_random_checkpoint.py OUT_DIR [hidden layers heads kv_heads intermediate]
"""
import json, os, shutil, struct, sys

out = sys.argv[1]
hidden, layers, heads, kv, inter = (int(x) for x in (sys.argv[2:7] or [768, 12, 12, 4, 3072]))
src = os.path.join(os.path.dirname(__file__), "..", "models", "embedded")
vocab = json.load(open(os.path.join(src, "config.json")))["vocab_size"]
d = hidden // heads
shapes = {"model.embed_tokens.weight": [vocab, hidden], "model.norm.weight": [hidden], "lm_head.weight": [vocab, hidden]}
for i in range(layers):
    p = f"model.layers.{i}."
    shapes.update({p + "input_layernorm.weight": [hidden], p + "post_attention_layernorm.weight": [hidden],
                   p + "self_attn.q_proj.weight": [heads * d, hidden], p + "self_attn.k_proj.weight": [kv * d, hidden],
                   p + "self_attn.v_proj.weight": [kv * d, hidden], p + "self_attn.o_proj.weight": [hidden, heads * d],
                   p + "mlp.gate_proj.weight": [inter, hidden], p + "mlp.up_proj.weight": [inter, hidden],
                   p + "mlp.down_proj.weight": [hidden, inter]})
table = bytes((b & 0x80) | 0x3C for b in range(256))  # high byte of bf16: random sign, exponent near 2^-7
header, offset = {}, 0
for name, shape in shapes.items():
    n = 1
    for s in shape: n *= s
    header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + 2 * n]}
    offset += 2 * n
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    for name, shape in shapes.items():
        n = 1
        for s in shape: n *= s
        if len(shape) == 1:
            f.write(b"\x80\x3f" * n)
            continue
        raw = bytearray(os.urandom(2 * n))
        raw[1::2] = bytes(raw[1::2]).translate(table)
        f.write(raw)
json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab, "hidden_size": hidden,
           "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
           "rms_norm_eps": 1e-5, "max_position_embeddings": 32768, "rope_theta": 500000.0, "tie_word_embeddings": False,
           "torch_dtype": "bfloat16", "hidden_act": "silu", "eos_token_id": 2}, open(os.path.join(out, "config.json"), "w"), indent=1)
for f in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copy(os.path.join(src, f), out)
print(f"{out}: {offset // 2:,} parameters")
