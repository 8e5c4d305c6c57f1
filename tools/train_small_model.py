"""Trains a small long-context retrieval model (and its retaining heads) on the RULER-style samples `apb eval generate` makes.

Runs on the GPU machine (PyTorch, transformers, tokenizers; no network). The C# binary is the only source of samples, so
training and `apb eval ruler` see the same task distribution (training seeds >= 1000; the harness defaults to seed 0).
Recipe from /work/shared/training-notes.md: next-token loss on every token + ANSWER_WEIGHT x the answer tokens, a length
curriculum from 256 tokens doubling once teacher-forced accuracy on the needle tasks reaches 0.9, short samples kept in
every batch, constant LR during the curriculum and a cosine decay after it, bf16 autocast, SDPA.

Usage: python3 tools/train_small_model.py --apb publish/linux-x64/apb --out OUT_DIR [--seconds 420]
Writes OUT_DIR/model (a HF checkpoint: model.safetensors, config.json in the transformers-4 dialect, generation_config.json,
tokenizer.json, tokenizer_config.json, retaining_heads.safetensors), OUT_DIR/metrics.json and logs to stdout.
"""
import argparse, collections, copy, json, math, os, random, subprocess, sys, threading, time

import numpy as np
import torch
import torch.nn.functional as F

T0 = time.time()
p = argparse.ArgumentParser()
p.add_argument("--apb", required=True)
p.add_argument("--out", required=True)
p.add_argument("--seconds", type=float, default=420, help="whole-script budget; training stops early enough to save")
p.add_argument("--max-len", type=int, default=16384)
p.add_argument("--vocab", type=int, default=2048)
p.add_argument("--layers", type=int, default=6)
p.add_argument("--hidden", type=int, default=384)
p.add_argument("--heads", type=int, default=6)
p.add_argument("--kv-heads", type=int, default=2)
p.add_argument("--ffn", type=int, default=1024)
p.add_argument("--lr", type=float, default=2e-3)
p.add_argument("--tokens-per-step", type=int, default=65536)
p.add_argument("--answer-weight", type=float, default=5.0)
p.add_argument("--smoke", action="store_true", help="tiny run for checking the plumbing")
args = p.parse_args()

OUT = args.out
MODEL_DIR = os.path.join(OUT, "model")
DATA = os.path.join(OUT, "data")
os.makedirs(MODEL_DIR, exist_ok=True)
os.makedirs(DATA, exist_ok=True)
dev = "cuda" if torch.cuda.is_available() else "cpu"
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True
random.seed(0)
torch.manual_seed(0)
NIAH = ["niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2", "niah_multikey_3",
        "niah_multivalue", "niah_multiquery"]
OTHER = ["vt", "cwe", "fwe"]
TASK_WEIGHT = {**{t: 1.0 for t in NIAH}, **{t: 0.5 for t in OTHER}}
metrics = {"phases": {}, "curriculum": [], "eval": {}}


def log(*a):
    print(f"[{time.time() - T0:6.1f}s]", *a, flush=True)


def left():
    return args.seconds - (time.time() - T0)


def apb(*cmd):
    return subprocess.Popen([args.apb, "eval", "generate", *cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def read_ids(path):
    """`apb eval generate --format ids`: task TAB context ids TAB query ids TAB answer ids. Rows hold numpy arrays."""
    rows = []
    with open(path) as f:
        for line in f:
            task, c, q, a = line.rstrip("\n").split("\t")
            rows.append((task, np.fromstring(c, dtype=np.int32, sep=" "), np.fromstring(q, dtype=np.int32, sep=" "),
                         np.fromstring(a, dtype=np.int32, sep=" ")))
    return rows


# ---------------------------------------------------------------- 1. tokenizer, trained on task text from the binary
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

text_file = os.path.join(DATA, "tokenizer_text.jsonl")
pr = apb("--tokenizer", "models/embedded", "--tasks", "all", "--length", "512,2k", "--samples", "20" if args.smoke else "100",
         "--seed", "999", "--out", text_file)
log(pr.communicate()[0].strip())
assert pr.returncode == 0, "apb eval generate failed"


def texts():
    with open(text_file) as f:
        for line in f:
            d = json.loads(line)
            yield d["context"] + d["query"] + d["answer_text"]


tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
tok.decoder = decoders.ByteLevel()
tok.post_processor = processors.ByteLevel(trim_offsets=False)
tok.train_from_iterator(texts(), trainers.BpeTrainer(vocab_size=args.vocab, special_tokens=["<|endoftext|>"],
                                                     initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
fast.save_pretrained(MODEL_DIR)
EOS = tok.token_to_id("<|endoftext|>")
V = ((tok.get_vocab_size() + 63) // 64) * 64
log(f"tokenizer: {tok.get_vocab_size()} tokens (vocab_size {V}), eos {EOS}")

# ---------------------------------------------------------------- 2. samples at every length, generated in the background
LENGTHS = [256 * 2 ** i for i in range(20) if 256 * 2 ** i <= args.max_len]
# per task, per chunk; several chunks at the short lengths so training can start on the first while the rest are made
PLAN = {256: (4, 2500), 512: (2, 2000), 1024: (1, 2000), 2048: (1, 1000), 4096: (1, 500), 8192: (1, 250), 16384: (1, 120), 32768: (1, 40)}
if args.smoke:
    PLAN = {L: (1, 20) for L in PLAN}
pools = {L: [] for L in LENGTHS}
procs = []
for L in LENGTHS:
    chunks, n = PLAN.get(L, (1, 40))
    for c in range(chunks):
        path = os.path.join(DATA, f"train_{L}_{c}.jsonl")
        procs.append((L, path, apb("--tokenizer", MODEL_DIR, "--tasks", "all", "--length", str(L), "--samples", str(n),
                                   "--seed", str(1000 + 17 * c), "--threads", "2", "--format", "ids", "--out", path)))
EVAL_LENGTHS = [L for L in LENGTHS if L in (256, 1024, 4096, 16384)] + ([2 * args.max_len] if 2 * args.max_len <= 32768 else [])
eval_path = os.path.join(DATA, "eval.jsonl")
procs.append((0, eval_path, apb("--tokenizer", MODEL_DIR, "--tasks", "all", "--length", ",".join(map(str, EVAL_LENGTHS)),
                                "--samples", "2" if args.smoke else "8", "--seed", "7", "--threads", "2", "--format", "ids",
                                "--out", eval_path)))
eval_rows = []
lock = threading.Lock()


def loader():
    pending = list(procs)
    while pending:
        for item in list(pending):
            L, path, pr = item
            if pr.poll() is None:
                continue
            pending.remove(item)
            msg = pr.stdout.read().strip()
            if pr.returncode != 0:
                log(f"generate {path} failed: {msg}")
                continue
            rows = read_ids(path)
            with lock:
                (eval_rows if L == 0 else pools[L]).extend(rows)
            log(f"loaded {len(rows)} samples of {L or 'eval'} ({msg})")
        time.sleep(0.2)


threading.Thread(target=loader, daemon=True).start()

# ---------------------------------------------------------------- 3. model and training loop
common = dict(vocab_size=V, hidden_size=args.hidden, intermediate_size=args.ffn, num_hidden_layers=args.layers,
              num_attention_heads=args.heads, num_key_value_heads=args.kv_heads, max_position_embeddings=32768,
              rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=None, eos_token_id=EOS, pad_token_id=EOS,
              hidden_act="silu")
try:
    cfg = LlamaConfig(rope_parameters={"rope_type": "default", "rope_theta": 1e6}, **common)
except TypeError:  # transformers 4.x
    cfg = LlamaConfig(rope_theta=1e6, **common)
cfg._attn_implementation = "sdpa"
model = LlamaForCausalLM(cfg).to(dev)
nparams = sum(p.numel() for p in model.parameters())
log(f"model: {nparams / 1e6:.2f}M parameters, {args.layers} layers, d={args.hidden}, {args.heads} heads / {args.kv_heads} kv; "
    f"rope theta {getattr(cfg, 'rope_parameters', None) or cfg.rope_theta}")
decay, no_decay = [], []
for n_, p_ in model.named_parameters():
    (no_decay if p_.dim() < 2 else decay).append(p_)
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                        lr=args.lr, betas=(0.9, 0.95), fused=dev == "cuda")


def make_batch(rows):
    """Right-padded [B, T] inputs, targets and loss weights; answer spans for teacher-forced accuracy."""
    seqs, spans = [], []
    for task, c, q, a in rows:
        s = np.concatenate([c, q, a, np.array([EOS], dtype=np.int32)]).astype(np.int64)
        seqs.append(s)
        spans.append((len(c) + len(q), len(a)))
    T = max(len(s) for s in seqs) - 1
    inp = torch.full((len(seqs), T), EOS, dtype=torch.long)
    tgt = torch.full((len(seqs), T), EOS, dtype=torch.long)
    w = torch.zeros((len(seqs), T))
    for i, (s, (start, na)) in enumerate(zip(seqs, spans)):
        n = len(s) - 1
        inp[i, :n] = torch.from_numpy(s[:-1])
        tgt[i, :n] = torch.from_numpy(s[1:])
        w[i, :n] = 1.0
        w[i, start - 1:start + na] = args.answer_weight  # the answer tokens and the EOS after them
    return inp.to(dev, non_blocking=True), tgt.to(dev, non_blocking=True), w.to(dev, non_blocking=True), spans


def forward(rows, train=True):
    inp, tgt, w, spans = make_batch(rows)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev == "cuda"):
        logits = model(input_ids=inp).logits
    ce = F.cross_entropy(logits.float().view(-1, logits.size(-1)), tgt.view(-1), reduction="none").view_as(w)
    loss = (ce * w).sum() / w.sum()
    pred = logits.argmax(-1)
    correct = []
    for i, (start, na) in enumerate(spans):
        correct.append(bool((pred[i, start - 1:start - 1 + na] == tgt[i, start - 1:start - 1 + na]).all()))
    return loss, correct


def draw(L, n):
    with lock:
        pool = pools[L]
        if not pool:
            return []
        out = []
        while len(out) < n:
            r = random.choice(pool)
            if random.random() < TASK_WEIGHT[r[0]]:
                out.append(r)
        return out


while not pools[256] and left() > 0:
    time.sleep(0.2)
metrics["phases"]["setup_s"] = round(time.time() - T0, 1)
log("training starts")

SAVE_RESERVE = 20 if args.smoke else 95        # retaining heads (~45 s), evaluation, saving
train_end = T0 + args.seconds - SAVE_RESERVE
train_start = time.time()
L_idx, step, tokens_seen = 0, 0, 0
recent = collections.deque(maxlen=256)
since_change = 0
decay_from = None           # (time, lr) once the curriculum is done (or time forces it)
half_idx = None
best = None                 # (len index, acc, state) to fall back to if late training diverges
history = collections.deque(maxlen=50)
model.train()
while time.time() < train_end:
    L = LENGTHS[L_idx]
    now = time.time()
    frac = (now - train_start) / max(train_end - train_start, 1)
    # learning rate: warmup, constant during the curriculum, cosine to 5% once it is done or time presses
    if decay_from is None and (L_idx == len(LENGTHS) - 1 or frac > 0.85):
        decay_from = now
        log(f"lr decay starts at step {step} (length {L})")
    if step < 150:
        lr = args.lr * (step + 1) / 150
    elif decay_from is None:
        lr = args.lr
    else:
        f = min(1.0, (now - decay_from) / max(train_end - decay_from, 1))
        lr = args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * f)))
    for g in opt.param_groups:
        g["lr"] = lr
    # batch: most tokens at the current length, the rest from one shorter length (forgetting guard)
    budget = args.tokens_per_step
    parts = []
    if L_idx > 0:
        S = LENGTHS[random.randrange(L_idx)]
        if pools[S]:
            parts.append(("short", draw(S, max(1, (budget // 4) // S))))
            budget -= budget // 4
    if not pools[L]:
        time.sleep(0.1)
        continue
    main = draw(L, max(1, budget // L))
    parts.append(("main", main))
    opt.zero_grad(set_to_none=True)
    total_loss = 0.0
    for name, rows in parts:
        if not rows:
            continue
        loss, correct = forward(rows)
        scale = sum(len(r[1]) + len(r[2]) for r in rows) / args.tokens_per_step
        (loss * scale).backward()
        total_loss += float(loss.detach()) if (step + 1) % 50 == 0 else 0.0
        if name == "main":
            recent.extend(c for r, c in zip(rows, correct) if r[0] in NIAH)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    step += 1
    since_change += 1
    tokens_seen += sum(len(r[1]) + len(r[2]) for _, rows in parts for r in rows)
    acc = sum(recent) / len(recent) if recent else 0.0
    if step % 50 == 0:
        log(f"step {step} len {L} loss {total_loss:.3f} niah-acc {acc:.3f} lr {lr:.2e} tokens {tokens_seen / 1e6:.1f}M")
        history.append(acc)
    # curriculum: double on accuracy, or on time once half the training time is gone
    forced = False
    if frac > 0.5 and L_idx < len(LENGTHS) - 1:
        if half_idx is None:
            half_idx = L_idx
        want = half_idx + (len(LENGTHS) - 1 - half_idx) * min(1.0, (frac - 0.5) / 0.3)
        forced = L_idx < int(want) and since_change >= 20
    if L_idx < len(LENGTHS) - 1 and ((len(recent) >= min(200, 8 * max(1, budget // L)) and acc >= 0.9 and since_change >= 30) or forced):
        if best is None or L_idx >= best[0]:
            best = (L_idx, acc, copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()}))
        metrics["curriculum"].append({"length": L, "step": step, "seconds": round(time.time() - train_start, 1),
                                      "niah_acc": round(acc, 3), "forced": forced})
        log(f"curriculum: {L} -> {LENGTHS[L_idx + 1]} at step {step} (niah-acc {acc:.3f}{', forced by time' if forced else ''})")
        L_idx += 1
        since_change = 0
        recent.clear()
metrics["phases"]["train_s"] = round(time.time() - train_start, 1)
metrics["steps"] = step
metrics["tokens"] = tokens_seen
metrics["final_length"] = LENGTHS[L_idx]
final_acc = sum(recent) / len(recent) if recent else 0.0
metrics["final_niah_acc_at_length"] = round(final_acc, 3)
log(f"training done: {step} steps, {tokens_seen / 1e6:.0f}M tokens, length {LENGTHS[L_idx]}, niah-acc {final_acc:.3f}")
if best is not None and best[1] >= 0.9 and final_acc < 0.3 and max(history or [0]) >= 0.9:
    log(f"accuracy collapsed late ({final_acc:.2f}); restoring the weights saved at length {LENGTHS[best[0]]}")
    model.load_state_dict(best[2])
    metrics["restored_from_length"] = LENGTHS[best[0]]

# ---------------------------------------------------------------- 4. evaluation: teacher-forced exact match (= greedy when exact)
try:
    model.eval()
    with torch.no_grad():
        deadline = time.time() + 10
        while not eval_rows and time.time() < deadline:
            time.sleep(0.2)
        by = collections.defaultdict(list)
        for r in eval_rows:
            by[(len(r[1]) + len(r[2]), r[0])].append(r)
        res = collections.defaultdict(lambda: collections.defaultdict(list))
        for r in eval_rows:
            n = len(r[1]) + len(r[2])
            L = min(EVAL_LENGTHS, key=lambda x: abs(x - n))
            _, correct = forward([r], train=False)
            res[L][r[0]].append(correct[0])
        for L in sorted(res):
            row = {t: round(sum(v) / len(v), 3) for t, v in sorted(res[L].items())}
            row["mean"] = round(sum(row.values()) / len(row), 3)
            metrics["eval"][str(L)] = row
            log(f"eval {L}: mean {row['mean']:.3f} " + " ".join(f"{t}={a:.2f}" for t, a in row.items() if t != "mean"))

except Exception as e:  # never lose the trained weights to an evaluation bug
    log(f"evaluation failed: {e!r}")

# ---------------------------------------------------------------- 5. save the checkpoint (bf16, transformers-4 config dialect)
model.to(torch.bfloat16).save_pretrained(MODEL_DIR, safe_serialization=True)
cpath = os.path.join(MODEL_DIR, "config.json")
c = json.load(open(cpath))
rp = c.pop("rope_parameters", None) or {}
c["rope_theta"] = rp.get("rope_theta", c.get("rope_theta", 1e6))
c["rope_scaling"] = None
if "dtype" in c:
    c["torch_dtype"] = c.pop("dtype")
json.dump(c, open(cpath, "w"), indent=2)
json.dump({"eos_token_id": EOS, "pad_token_id": EOS, "do_sample": False, "max_new_tokens": 64},
          open(os.path.join(MODEL_DIR, "generation_config.json"), "w"), indent=2)
model.float()
log('checkpoint saved')

# ---------------------------------------------------------------- 6. retaining heads (Locret-style), frozen backbone
try:
    from safetensors.torch import save_file
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    nh, nkv, hd = args.heads, args.kv_heads, args.hidden // args.heads
    group = nh // nkv
    heads = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Linear((nh + 2 * nkv) * hd, 1024, bias=False), torch.nn.SiLU(),
                                                     torch.nn.Linear(1024, nkv, bias=False)) for _ in range(args.layers)]).to(dev)
    hopt = torch.optim.AdamW(heads.parameters(), lr=1e-3, weight_decay=0.0)
    for p_ in model.parameters():
        p_.requires_grad_(False)
    head_L = max([L for L in (4096, 2048, 1024) if L in pools and pools[L]] or [256])
    head_end = time.time() + max(5.0, min(45.0, left() - 30))
    hstep, hloss = 0, float("nan")
    while time.time() < head_end:
        rows = draw(head_L, 2)
        loss_sum = 0.0
        for task, c, q, a in rows:
            ids = torch.from_numpy(np.concatenate([c, q, a]).astype(np.int64))[None].to(dev)
            n_ctx = len(c)
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev == "cuda"):
                out = model.model(input_ids=ids, output_hidden_states=True)
                pos = torch.arange(ids.size(1), device=dev)[None]
            feats, targets = [], []
            with torch.no_grad():
                for i, layer in enumerate(model.model.layers):
                    x = layer.input_layernorm(out.hidden_states[i].float())
                    at = layer.self_attn
                    q_ = at.q_proj(x).float()
                    k_ = at.k_proj(x).float()
                    v_ = at.v_proj(x).float()
                    cos, sin = model.model.rotary_emb(x, pos)
                    qr, kr = apply_rotary_pos_emb(q_.view(1, -1, nh, hd).transpose(1, 2), k_.view(1, -1, nkv, hd).transpose(1, 2),
                                                  cos.float(), sin.float())
                    # the most any query/answer token (any head of the GQA group) attends to each context key, as a logit
                    qq = qr[0, :, n_ctx:].reshape(nkv, group, -1, hd).reshape(nkv, -1, hd)       # [nkv, group*Tq, d]
                    logits = torch.einsum("hqd,hkd->hkq", qq, kr[0, :, :n_ctx]) / math.sqrt(hd)    # [nkv, n_ctx, group*Tq]
                    targets.append(logits.amax(-1).transpose(0, 1))                                # [n_ctx, nkv]
                    feats.append(torch.cat([q_[0, :n_ctx], k_[0, :n_ctx], v_[0, :n_ctx]], -1))
            for i in range(args.layers):
                pred = heads[i](feats[i])
                l1 = F.smooth_l1_loss(pred, targets[i])
                smooth = (pred[1:] - pred[:-1]).pow(2).mean()
                loss_sum = loss_sum + l1 + 0.1 * smooth
        if not rows:
            break
        hopt.zero_grad(set_to_none=True)
        (loss_sum / len(rows)).backward()
        hopt.step()
        hstep += 1
        hloss = float(loss_sum) / len(rows)
        if hstep % 50 == 0:
            log(f"retaining heads: step {hstep} loss {hloss:.4f}")
    metrics["retaining_heads"] = {"steps": hstep, "loss": round(hloss, 4), "length": head_L}
    log(f"retaining heads: {hstep} steps at length {head_L}, loss {hloss:.4f}")
    save_file({f"model.layers.{i}.self_attn.fc{j + 1}.weight": heads[i][2 * j].weight.detach().to(torch.bfloat16).contiguous().cpu()
               for i in range(args.layers) for j in range(2)}, os.path.join(MODEL_DIR, "retaining_heads.safetensors"))

except Exception as e:
    log(f"retaining heads failed: {e!r}")

metrics["parameters"] = nparams
metrics["total_s"] = round(time.time() - T0, 1)
json.dump(metrics, open(os.path.join(OUT, "metrics.json"), "w"), indent=2)
log("saved", sorted(os.listdir(MODEL_DIR)))
