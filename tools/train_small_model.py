"""Trains a small long-context retrieval model (and its retaining heads) on the RULER-style samples `apb eval generate` makes.

Runs on the GPU machine (PyTorch, transformers, tokenizers, safetensors; no network). The C# binary is the only source of
samples, so training and `apb eval ruler` see the same task distribution (training seeds >= 1000; the harness defaults to
seed 0). Recipe from /work/shared/training-notes.md: next-token loss on every token + ANSWER_WEIGHT x the answer tokens, a
length curriculum from a short length that moves up once teacher-forced accuracy reaches a threshold (or the clock says
so), short samples kept in every batch, constant LR during the curriculum and a cosine decay after it, bf16 autocast, SDPA.

Two modes:
  from scratch (default): trains a byte-level BPE tokenizer on task text, then a model of --layers/--hidden/... (lr 2e-3).
  warm start (--init models/embedded): loads that checkpoint and its tokenizer.json (the architecture comes from its
    config.json; its retaining heads, if there, only seed the heads retrained at the end) and spends the time on the weak
    tasks: --task-weights defaults favour multi-key, vt, multi-value/-query and cwe/fwe, single needles keep a small share
    so nothing is forgotten; peak lr 1e-3 after 50 warm-up steps; curriculum from 256 tokens (multi-key is learnable
    there) up to --max-len, by accuracy or, from 40% of the training time, by the clock; cosine decay once at --max-len.
Both modes evaluate a held-out selection set (seed 3 at 1K/4K/16K; teacher-forced exact match) every --eval-every seconds
(and, warm, before the first step) and keep the weights with the best mean over the trained tasks: a late divergence
cannot ruin the run, and a warm start never ends worse than its starting point on that set. The report evaluation
(seed 7, 256..32K, 8 samples per task, as in the model card) runs on the kept weights.

Usage: python3 tools/train_small_model.py --apb publish/linux-x64/apb --out OUT_DIR [--seconds 420]
           [--init models/embedded] [--task-weights niah_multikey_2=4,vt=3] [--pack DIR] [--smoke]
           [--max-len 65536 --rope-scaling yarn:8:16384 --sel-lengths 4096,16384,65536]   (a 16K model fine-tuned for 128K)
bench/gpu/train.sh runs the warm start on the GPU machine (a --smoke run first, then the real one).
Writes OUT_DIR/model (a HF checkpoint: model.safetensors, config.json in the transformers-4 dialect, generation_config.json,
tokenizer.json, tokenizer_config.json, retaining_heads.safetensors), OUT_DIR/metrics.json, OUT_DIR/data (samples) and logs
to stdout. --pack DIR also writes DIR/model.tar.part-aa, -ab, ... (an uncompressed tar of model/ cut into 15 MiB parts:
the GPU machine returns at most 8 files of at most 16 MiB) and DIR/metrics.json (its "pack" entry has the tar's sha256).
Restore:
    cat model.tar.part-* | sha256sum      # = metrics.json pack.sha256
    cat model.tar.part-* | tar x          # -> model/ ; then e.g. cp model/* models/embedded/
"""
import argparse, collections, glob, hashlib, io, json, math, os, random, shutil, statistics, subprocess, sys, tarfile, threading, time

import numpy as np
import torch
import torch.nn.functional as F

T0 = time.time()
NIAH = ["niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2", "niah_multikey_3",
        "niah_multivalue", "niah_multiquery"]
OTHER = ["vt", "cwe", "fwe"]
TASKS = NIAH + OTHER
# Training only (RulerTasks.Training): never in the selection or report sets, weight 0 unless --task-weights names it.
# niah_multikey_2_shared keys half its needles with a word of the asked key: multikey_2's misses past 16K are one-word
# matches (docs/notes/multikey-long-context.md); run 6 of the embedded model trained on it (weight 6). niah_multikey_3_prefix
# gives half the needles a value starting like the asked one: multikey_3's misses are copying drifts into such values.
# E.g. --task-weights niah_multikey_2_shared=6,niah_multikey_3_prefix=4
TRAIN_ONLY = ["niah_multikey_2_shared", "niah_multikey_3_prefix"]
# Warm start: the shipped model has single needles at ~100% to 16K; multi-key (0-50%), vt (falls with length) and cwe/fwe
# (~0) are what the time is for. Singles keep 1.5/17.5 of the samples so the copy circuit they rely on is not forgotten.
WARM_WEIGHTS = {"niah_single_1": 0.5, "niah_single_2": 0.5, "niah_single_3": 0.5,
                "niah_multikey_1": 3.0, "niah_multikey_2": 3.0, "niah_multikey_3": 3.0,
                "niah_multivalue": 1.5, "niah_multiquery": 1.5, "vt": 2.0, "cwe": 1.0, "fwe": 1.0}
SCRATCH_WEIGHTS = {**{t: 1.0 for t in NIAH}, **{t: 0.5 for t in OTHER}, **{t: 0.0 for t in TRAIN_ONLY}}
WARM_WEIGHTS.update({t: 0.0 for t in TRAIN_ONLY})
GROUPS = {"single": ["niah_single_1", "niah_single_2", "niah_single_3"],
          "multikey": ["niah_multikey_1", "niah_multikey_2", "niah_multikey_3"],
          "mv_mq": ["niah_multivalue", "niah_multiquery"], "vt": ["vt"], "cwe_fwe": ["cwe", "fwe"]}

p = argparse.ArgumentParser()
p.add_argument("--apb", required=True)
p.add_argument("--out", required=True)
p.add_argument("--seconds", type=float, default=420, help="whole-script budget; training stops early enough to save")
p.add_argument("--init", help="warm start from this HF checkpoint folder (model.safetensors, config.json, tokenizer.json)")
p.add_argument("--max-len", type=int, default=16384)
p.add_argument("--max-position", type=int, default=0,
               help="max_position_embeddings of the model and the saved config (0: the checkpoint's, or 32768 from scratch); "
                    "must hold --max-len: a 64K run needs 65536")
p.add_argument("--rope-theta", type=float, default=0,
               help="RoPE base to train with (0: the checkpoint's, or 1e6 from scratch). A warm start that changes it "
                    "re-learns positions (adjusted base frequency); 1e6 already turns slower than 64K positions span")
p.add_argument("--rope-scaling", default="",
               help="yarn:FACTOR:ORIGINAL to train with YaRN (e.g. yarn:8:16384 for a 16K model read to 128K), 'none' for plain "
                    "RoPE; default: the init checkpoint's (plain or yarn). Sets max_position_embeddings to FACTOR x ORIGINAL "
                    "unless --max-position is given")
p.add_argument("--vocab", type=int, default=2048, help="from scratch only (like --layers ... --ffn)")
p.add_argument("--layers", type=int, default=6)
p.add_argument("--hidden", type=int, default=384)
p.add_argument("--heads", type=int, default=6)
p.add_argument("--kv-heads", type=int, default=2)
p.add_argument("--ffn", type=int, default=1024)
p.add_argument("--lr", type=float, help="peak learning rate (default 1e-3 with --init, else 2e-3)")
p.add_argument("--heads-seconds", type=float, default=45.0,
               help="time for retraining the retaining heads on the new backbone (at most; the clock may leave less); 0 keeps "
                    "--init's heads unchanged: run 11 (bench/results/train-run11-20261206) retrained them to a lower loss "
                    "that selected worse under APB")
p.add_argument("--warmup", type=int, help="linear warm-up steps (default 50 with --init, else 150)")
p.add_argument("--start-len", type=int, default=256, help="first curriculum length")
p.add_argument("--advance-acc", type=float, help="move up a length at this recent train accuracy (default 0.85 with --init, else 0.9)")
p.add_argument("--ramp", help="FROM,TO: fractions of the training time over which the clock forces the curriculum to "
                              "--max-len (default 0.4,0.7 with --init, else 0.5,0.8)")
p.add_argument("--short-frac", type=float, default=0.25, help="share of every step's tokens drawn from a shorter length")
p.add_argument("--task-weights", default="", help="name=w,... sampling weights (0 drops a task); unnamed tasks keep the "
                                                  "default (warm: multi-key 3, vt 2, mv/mq 1.5, cwe/fwe 1, singles 0.5)")
p.add_argument("--eval-every", type=float, default=35.0, help="seconds between held-out selection evaluations")
p.add_argument("--sel-lengths", default="1024,4096,16384")
p.add_argument("--sel-samples", type=int, default=12, help="held-out samples per task and length for the selection")
p.add_argument("--lr-floor", type=float, default=0.05, help="the cosine decays to this fraction of the peak")
p.add_argument("--tokens-per-step", type=int, default=65536)
p.add_argument("--answer-weight", type=float, default=5.0)
p.add_argument("--pack", help="also write the model as tar parts of <= 15 MiB + metrics.json into this folder")
p.add_argument("--smoke", action="store_true", help="every code path in well under a minute (tiny data, 12 s of training)")
args = p.parse_args()

WARM = args.init is not None
if args.heads_seconds <= 0 and not (WARM and os.path.exists(os.path.join(args.init, "retaining_heads.safetensors"))):
    p.error("--heads-seconds 0 keeps --init's retaining heads: give --init a checkpoint folder that has retaining_heads.safetensors")
LR = args.lr if args.lr is not None else (1e-3 if WARM else 2e-3)
WARMUP = args.warmup if args.warmup is not None else (50 if WARM else 150)
ADVANCE_ACC = args.advance_acc if args.advance_acc is not None else (0.85 if WARM else 0.9)
RAMP = tuple(float(x) for x in (args.ramp or ("0.4,0.7" if WARM else "0.5,0.8")).split(","))
assert len(RAMP) == 2 and 0 <= RAMP[0] < RAMP[1] <= 1, f"--ramp {args.ramp}: expected FROM,TO with 0 <= FROM < TO <= 1"
DECAY_AT = min(0.85, RAMP[1] + 0.05)   # the cosine starts at --max-len or, at the latest, here
W = dict(WARM_WEIGHTS if WARM else SCRATCH_WEIGHTS)
for item in filter(None, (s.strip() for s in args.task_weights.split(","))):
    name, _, val = item.partition("=")
    assert name in W and val, f"--task-weights {item!r}: expected name=weight with a name from {TASKS + TRAIN_ONLY}"
    W[name] = float(val)
    assert W[name] >= 0, f"--task-weights {item!r}: negative weight"
ACTIVE = [t for t in TASKS + TRAIN_ONLY if W[t] > 0]
assert ACTIVE, "--task-weights leaves no task"
# The curriculum's accuracy gate: aggregation tasks may never reach the threshold, and the training-only look-alike tasks
# are hard on purpose. Run 7 (bench/results/train-run7-20261204) gated on niah_multikey_3_prefix too: the gate held
# it at 4K-16K for two thirds of its steps and its 16K-64K selection fell, so they only train, they do not gate.
CURRIC = [t for t in ACTIVE if t not in ("cwe", "fwe") and t not in TRAIN_ONLY] or ACTIVE
SELECT = [t for t in ACTIVE if t not in TRAIN_ONLY] or ACTIVE      # tasks whose held-out mean picks the kept weights
if args.smoke:  # tiny and clock-compressed, but the real model, the real tokens per step and every length
    RAMP, DECAY_AT, WARMUP = (0.0, 0.5), 0.6, min(WARMUP, 5)
    args.eval_every, args.sel_samples = 4.0, 2
MIN_STEPS = 2 if args.smoke else 20     # steps at a length before the clock may move it

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
metrics = {"mode": "warm" if WARM else "scratch", "init": args.init, "task_weights": W, "lr": LR, "warmup": WARMUP,
           "advance_acc": ADVANCE_ACC, "ramp": RAMP, "phases": {}, "curriculum": [], "select": [], "eval": {},
           "generate_failures": []}


LOG_LOCK = threading.Lock()   # the sample loader logs from its own thread


def log(*a):
    line = " ".join([f"[{time.time() - T0:6.1f}s]"] + [str(x) for x in a])
    with LOG_LOCK:
        print(line, flush=True)


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


# ---------------------------------------------------------------- 1. tokenizer: the init checkpoint's, or trained on task text
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from safetensors.torch import load_file, save_file

ROPE_SCALING = None   # plain RoPE unless the init checkpoint or --rope-scaling says YaRN
if WARM:
    init_cfg = json.load(open(os.path.join(args.init, "config.json")))
    for f in ("tokenizer.json", "tokenizer_config.json"):  # copied byte for byte: the ids must not move
        if os.path.exists(os.path.join(args.init, f)):
            shutil.copy(os.path.join(args.init, f), os.path.join(MODEL_DIR, f))
    tok = Tokenizer.from_file(os.path.join(MODEL_DIR, "tokenizer.json"))
    EOS = tok.token_to_id("<|endoftext|>")
    assert EOS is not None, f"{args.init}/tokenizer.json has no <|endoftext|>"
    V = init_cfg["vocab_size"]
    assert tok.get_vocab_size() <= V, f"tokenizer has {tok.get_vocab_size()} tokens, config vocab_size {V}"
    # The architecture is the checkpoint's; the config is rebuilt the way this script builds it from scratch (the path
    # that made the checkpoint), so both config dialects (rope_theta at the top, 4.x; rope_parameters, 5.x) load alike.
    args.layers, args.hidden = init_cfg["num_hidden_layers"], init_cfg["hidden_size"]
    args.heads, args.kv_heads = init_cfg["num_attention_heads"], init_cfg.get("num_key_value_heads", init_cfg["num_attention_heads"])
    args.ffn = init_cfg["intermediate_size"]
    assert init_cfg.get("head_dim") in (None, args.hidden // args.heads), "head_dim != hidden/heads is not supported here"
    rp = init_cfg.get("rope_parameters") or init_cfg.get("rope_scaling") or {}
    rtype = rp.get("rope_type", rp.get("type", "default"))
    assert rtype in ("default", "yarn"), f"{args.init}: rope type {rtype}: only plain RoPE and YaRN are supported here"
    if rtype == "yarn":
        ROPE_SCALING = {"rope_type": "yarn", "factor": float(rp["factor"]),
                        "original_max_position_embeddings": int(rp["original_max_position_embeddings"])}
    ROPE_THETA = float(init_cfg.get("rope_theta") or rp.get("rope_theta") or 10000.0)
    MAX_POS = init_cfg.get("max_position_embeddings", 32768)
    RMS_EPS = init_cfg.get("rms_norm_eps", 1e-5)
    TIE = bool(init_cfg.get("tie_word_embeddings", False))
    log(f"warm start from {args.init}: tokenizer {tok.get_vocab_size()} tokens (vocab_size {V}), eos {EOS}")
else:
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
    ROPE_THETA, MAX_POS, RMS_EPS, TIE = 1e6, 32768, 1e-5, False
    log(f"tokenizer: {tok.get_vocab_size()} tokens (vocab_size {V}), eos {EOS}")

if args.rope_scaling:
    kind, *parts = args.rope_scaling.split(":")
    assert (kind == "none" and not parts) or (kind == "yarn" and len(parts) == 2), \
        f"--rope-scaling {args.rope_scaling}: expected yarn:FACTOR:ORIGINAL or none"
    ROPE_SCALING = None if kind == "none" else \
        {"rope_type": "yarn", "factor": float(parts[0]), "original_max_position_embeddings": int(parts[1])}
    if ROPE_SCALING:
        assert ROPE_SCALING["factor"] > 1 and ROPE_SCALING["original_max_position_embeddings"] > 0, f"--rope-scaling {args.rope_scaling}"
        MAX_POS = int(ROPE_SCALING["factor"] * ROPE_SCALING["original_max_position_embeddings"])
if args.max_position:
    MAX_POS = args.max_position
if args.rope_theta:
    ROPE_THETA = args.rope_theta
log(f"max_position_embeddings {MAX_POS}, rope theta {ROPE_THETA:g}, rope scaling {ROPE_SCALING}")

# ---------------------------------------------------------------- 2. samples, generated in the background, most needed first
LENGTHS = [256 * 2 ** i for i in range(20) if 256 * 2 ** i <= args.max_len]
assert args.max_len in LENGTHS and args.max_len <= MAX_POS, f"--max-len {args.max_len}: a power of two from 256 to {MAX_POS}"
assert args.start_len in LENGTHS, f"--start-len {args.start_len}: one of {LENGTHS}"
SEL_LENGTHS = [L for L in (int(x) for x in args.sel_lengths.split(",")) if L <= args.max_len] or [args.max_len]
# The model card's lengths up to --max-len (32K and 64K only when trained there), then twice --max-len where the
# positions allow it: how the model does past its training length.
REPORT_LENGTHS = [L for L in LENGTHS if L in (256, 1024, 4096, 16384, 32768, 65536)] + ([2 * args.max_len] if 2 * args.max_len <= MAX_POS else [])
# per length: (chunks, samples per task per chunk). Tasks weighted above the median get twice the chunks (fresh seeds), so
# the heavy tasks repeat no more often than the rest. The warm plan holds more short samples: that is where time goes.
if args.smoke:
    PLAN = {L: (1, 12) for L in LENGTHS}
elif WARM:
    PLAN = {256: (2, 5000), 512: (2, 2500), 1024: (1, 2500), 2048: (1, 1200), 4096: (1, 600), 8192: (1, 300), 16384: (1, 160),
            32768: (1, 80), 65536: (1, 40)}
else:
    PLAN = {256: (4, 2500), 512: (2, 2000), 1024: (1, 2000), 2048: (1, 1000), 4096: (1, 500), 8192: (1, 250), 16384: (1, 120),
            32768: (1, 60), 65536: (1, 30)}
median_w = statistics.median(W[t] for t in ACTIVE)
MULT = {t: 2 if W[t] > median_w else 1 for t in ACTIVE}
SEED0 = 5000 if WARM else 1000      # a warm start sees samples the shipped run (seeds 1000+) never saw
jobs = []                           # in launch order


def job(kind, lengths, n, tasks, seed, name):
    jobs.append({"kind": kind, "L": lengths[0], "path": os.path.join(DATA, name), "done": False,
                 "cmd": ["--tokenizer", MODEL_DIR, "--tasks", ",".join(tasks), "--length", ",".join(map(str, lengths)),
                         "--samples", str(n), "--seed", str(seed), "--threads", "2", "--format", "ids",
                         "--out", os.path.join(DATA, name)]})


# A small first chunk so training starts within seconds, the selection set (needed for the warm step-0 evaluation) and
# the report set (small; needed only at the end, but a slow machine must not leave it last in the queue).
job("train", [args.start_len], min(400, PLAN.get(args.start_len, (1, 40))[1]), ACTIVE, SEED0 + 999, f"train_{args.start_len}_first.ids")
job("sel", SEL_LENGTHS, args.sel_samples, SELECT, 3, "select.ids")
job("report", REPORT_LENGTHS, 1 if args.smoke else 8, TASKS, 7, "report.ids")
for L in LENGTHS:
    chunks, n = PLAN.get(L, (1, 40))
    for c in range(2 * chunks):
        tasks = [t for t in ACTIVE if c < chunks * MULT[t]]
        if tasks:
            job("train", [L], n, tasks, SEED0 + 17 * c, f"train_{L}_{c}.ids")

pools = {L: collections.defaultdict(list) for L in LENGTHS}   # length -> task -> rows
eval_sets = {"sel": [], "report": []}
lock = threading.Lock()
stop_gen = threading.Event()
GEN_PAR = max(2, min(6, (os.cpu_count() or 4) // 3))           # 2 threads each; leave cores for the training loop


def loader():
    queue, running = list(jobs), []
    while (queue and not stop_gen.is_set()) or running:
        while queue and len(running) < GEN_PAR and not stop_gen.is_set():
            j = queue.pop(0)
            j["proc"] = apb(*j["cmd"])
            running.append(j)
        for j in list(running):
            pr = j["proc"]
            if pr.poll() is None:
                continue
            running.remove(j)
            try:
                msg = pr.stdout.read().strip()
                if stop_gen.is_set() and pr.returncode < 0:  # killed by us at the end of a short run
                    j["done"] = True
                    continue
                if pr.returncode != 0:
                    raise RuntimeError(f"exit {pr.returncode}: {msg}")
                rows = read_ids(j["path"])
                with lock:
                    if j["kind"] == "train":
                        for r in rows:
                            pools[j["L"]][r[0]].append(r)
                    else:
                        eval_sets[j["kind"]].extend(rows)
                log(f"loaded {len(rows)} {j['kind']} samples ({msg})")
            except Exception as e:  # a failed chunk costs data, not the run (--smoke fails on it at the end)
                metrics["generate_failures"].append(j["path"])
                log(f"generate {j['path']} failed: {e!r}")
            j["done"] = True
        time.sleep(0.2)


def ready(L):
    with lock:
        return any(pools[L].values())


def wait_for(kind, seconds):
    end = time.time() + seconds
    while time.time() < end and not all(j["done"] for j in jobs if j["kind"] == kind):
        time.sleep(0.2)


def draw(L, n):
    """n rows of length L, tasks drawn by their weights (among the tasks loaded so far), rows uniformly within a task."""
    with lock:
        pool = pools[L]
        names = [t for t in ACTIVE if pool.get(t)]
        if not names:
            return []
        picks = random.choices(names, weights=[W[t] for t in names], k=n)
        return [random.choice(pool[t]) for t in picks]


threading.Thread(target=loader, daemon=True).start()
log(f"task weights: " + " ".join(f"{t}={W[t]:g}" for t in TASKS + TRAIN_ONLY if t in TASKS or W[t] > 0) + f"; {len(jobs)} generate jobs, {GEN_PAR} at a time")

# ---------------------------------------------------------------- 3. model
common = dict(vocab_size=V, hidden_size=args.hidden, intermediate_size=args.ffn, num_hidden_layers=args.layers,
              num_attention_heads=args.heads, num_key_value_heads=args.kv_heads, max_position_embeddings=MAX_POS,
              rms_norm_eps=RMS_EPS, tie_word_embeddings=TIE, bos_token_id=None, eos_token_id=EOS, pad_token_id=EOS,
              hidden_act="silu")
try:
    cfg = LlamaConfig(rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA, **(ROPE_SCALING or {})}, **common)
except TypeError:  # transformers 4.x
    cfg = LlamaConfig(rope_theta=ROPE_THETA, rope_scaling=ROPE_SCALING, **common)
cfg._attn_implementation = "sdpa"
model = LlamaForCausalLM(cfg)
if WARM:
    # Plain state-dict load (bf16 -> fp32 master weights) into the model built above: strict about names and shapes.
    sd = load_file(os.path.join(args.init, "model.safetensors"))
    if TIE:
        sd.pop("lm_head.weight", None)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if "rotary_emb" not in k and not (TIE and k == "lm_head.weight")]
    assert not missing and not unexpected, f"{args.init}: missing {missing[:5]}, unexpected {unexpected[:5]}"
    del sd
model.to(dev)
nparams = sum(p.numel() for p in model.parameters())
log(f"model: {nparams / 1e6:.2f}M parameters, {args.layers} layers, d={args.hidden}, {args.heads} heads / {args.kv_heads} kv; "
    f"rope theta {getattr(cfg, 'rope_parameters', None) or cfg.rope_theta}; lr {LR:g}, warm-up {WARMUP}, ramp {RAMP}")
decay, no_decay = [], []
for n_, p_ in model.named_parameters():
    (no_decay if p_.dim() < 2 else decay).append(p_)
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                        lr=LR, betas=(0.9, 0.95), fused=dev == "cuda")


def make_batch(rows):
    """Right-padded [B, T] inputs, targets, loss weights and the answer-token mask (for teacher-forced accuracy)."""
    seqs, spans = [], []
    for task, c, q, a in rows:
        s = np.concatenate([c, q, a, np.array([EOS], dtype=np.int32)]).astype(np.int64)
        seqs.append(s)
        spans.append((len(c) + len(q), len(a)))
    T = max(len(s) for s in seqs) - 1
    inp = torch.full((len(seqs), T), EOS, dtype=torch.long)
    tgt = torch.full((len(seqs), T), EOS, dtype=torch.long)
    w = torch.zeros((len(seqs), T))
    amask = torch.zeros((len(seqs), T), dtype=torch.bool)
    for i, (s, (start, na)) in enumerate(zip(seqs, spans)):
        n = len(s) - 1
        inp[i, :n] = torch.from_numpy(s[:-1])
        tgt[i, :n] = torch.from_numpy(s[1:])
        w[i, :n] = 1.0
        w[i, start - 1:start + na] = args.answer_weight  # the answer tokens and the EOS after them
        amask[i, start - 1:start - 1 + na] = True         # positions whose targets are the answer tokens
    return (inp.to(dev, non_blocking=True), tgt.to(dev, non_blocking=True), w.to(dev, non_blocking=True),
            amask.to(dev, non_blocking=True))


def forward(rows):
    """Weighted loss and, per row, whether every answer token is the argmax (teacher-forced exact match; one sync)."""
    inp, tgt, w, amask = make_batch(rows)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev == "cuda"):
        logits = model(input_ids=inp).logits
    ce = F.cross_entropy(logits.float().view(-1, logits.size(-1)), tgt.view(-1), reduction="none").view_as(w)
    loss = (ce * w).sum() / w.sum()
    wrong = ((logits.argmax(-1) != tgt) & amask).any(-1)
    return loss, (~wrong).tolist()


def evaluate(rows, lengths):
    """{length: {task: accuracy}}: teacher-forced exact match (= greedy success when exact), about tokens-per-step a batch."""
    buckets = collections.defaultdict(list)
    for r in rows:
        n = len(r[1]) + len(r[2])
        buckets[min(lengths, key=lambda x: abs(x - n))].append(r)
    res = collections.defaultdict(lambda: collections.defaultdict(list))
    was = model.training
    model.eval()
    with torch.no_grad():
        for L, rs in sorted(buckets.items()):
            b = max(1, args.tokens_per_step // L)
            for i in range(0, len(rs), b):
                batch = rs[i:i + b]
                _, correct = forward(batch)
                for r, c in zip(batch, correct):
                    res[L][r[0]].append(c)
    model.train(was)
    return {L: {t: sum(v) / len(v) for t, v in sorted(d.items())} for L, d in sorted(res.items())}


best = None     # {"score", "step", "state"}: the weights with the best held-out mean so far (CPU copy, fp32)


def select_eval(step):
    """Held-out selection: mean over SELECT tasks and SEL_LENGTHS; keeps a CPU copy of the weights when it is the best."""
    global best
    with lock:
        rows = list(eval_sets["sel"])
    if not rows:
        log("selection set not loaded yet: no evaluation")
        return
    t = time.time()
    acc = evaluate(rows, SEL_LENGTHS)
    cells = [(L, task, a) for L, d in acc.items() for task, a in d.items() if task in SELECT]
    score = sum(a for _, _, a in cells) / len(cells)

    def mean_of(keep):
        vals = [a for L, task, a in cells if keep(L, task)]
        return round(sum(vals) / len(vals), 3) if vals else None

    groups = {g: mean_of(lambda L, task: task in ts) for g, ts in GROUPS.items()}
    groups = {g: a for g, a in groups.items() if a is not None}
    by_len = {L: mean_of(lambda l_, task: l_ == L) for L in acc}
    is_best = best is None or score >= best["score"]   # ties go to the later (more trained, lower-lr) weights
    if is_best:
        best = {"score": score, "step": step, "state": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}}
    metrics["select"].append({"step": step, "seconds": round(time.time() - T0, 1), "score": round(score, 4), "groups": groups,
                              "by_length": by_len, "acc": {str(L): {k: round(v, 3) for k, v in d.items()} for L, d in acc.items()}})
    log(f"select step {step}: score {score:.3f}{' (best)' if is_best else ''} | " + " ".join(f"{g} {a:.2f}" for g, a in groups.items())
        + " | " + " ".join(f"{L}: {a:.2f}" for L, a in by_len.items()) + f" ({time.time() - t:.1f} s)")


# ---------------------------------------------------------------- 4. training loop
while not ready(args.start_len) and left() > 0:
    time.sleep(0.2)
model.train()
if WARM:  # the starting point is the first candidate: the run cannot end below it on the selection set
    wait_for("sel", 60 if not args.smoke else 30)
    select_eval(0)
metrics["phases"]["setup_s"] = round(time.time() - T0, 1)
log("training starts")

# The end of a run: final selection, save, report evaluation, pack (31 s on an H200 in run 12), then the retaining heads'
# --heads-seconds (none when 0 keeps --init's heads).
SAVE_RESERVE = 40 + max(0.0, args.heads_seconds)
train_start = time.time()
train_end = train_start + 12 if args.smoke else T0 + args.seconds - SAVE_RESERVE
L_idx = LENGTHS.index(args.start_len)
step, tokens_seen, since_change = 0, 0, 0
recent = collections.deque(maxlen=256)
decay_from = None           # time the cosine starts (at --max-len, or at DECAY_AT of the training time)
ramp_from = None            # length index when the clock took over
next_eval = time.time() + args.eval_every
while time.time() < train_end:
    L = LENGTHS[L_idx]
    now = time.time()
    frac = (now - train_start) / max(train_end - train_start, 1e-3)
    if decay_from is None and (L_idx == len(LENGTHS) - 1 or frac > DECAY_AT):
        decay_from = now
        log(f"lr decay starts at step {step} (length {L})")
    if step < WARMUP:
        lr = LR * (step + 1) / WARMUP
    elif decay_from is None:
        lr = LR
    else:
        f = min(1.0, (now - decay_from) / max(train_end - decay_from, 1e-3))
        lr = LR * (args.lr_floor + (1 - args.lr_floor) * 0.5 * (1 + math.cos(math.pi * f)))
    for g in opt.param_groups:
        g["lr"] = lr
    # batch: most tokens at the current length, --short-frac from one shorter length (forgetting guard)
    budget = args.tokens_per_step
    parts = []
    if L_idx > 0:
        S = LENGTHS[random.randrange(L_idx)]
        short_budget = int(budget * args.short_frac)
        if short_budget >= S and ready(S):
            parts.append(("short", draw(S, short_budget // S)))
            budget -= short_budget
    main = draw(L, max(1, budget // L))
    if not main:
        time.sleep(0.1)
        continue
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
            recent.extend(c for r, c in zip(rows, correct) if r[0] in CURRIC)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    step += 1
    since_change += 1
    tokens_seen += sum(len(r[1]) + len(r[2]) for _, rows in parts for r in rows)
    acc = sum(recent) / len(recent) if recent else 0.0
    if step % 50 == 0:
        log(f"step {step} len {L} loss {total_loss:.3f} train-acc {acc:.3f} lr {lr:.2e} tokens {tokens_seen / 1e6:.1f}M")
    # curriculum: up a length on accuracy, or when the clock's ramp (RAMP[0] -> RAMP[1] of the time) says so
    if L_idx < len(LENGTHS) - 1 and ready(LENGTHS[L_idx + 1]):
        forced = False
        if frac > RAMP[0]:
            if ramp_from is None:
                ramp_from = L_idx
            want = ramp_from + (len(LENGTHS) - 1 - ramp_from) * min(1.0, (frac - RAMP[0]) / (RAMP[1] - RAMP[0]))
            forced = L_idx < int(want) and since_change >= MIN_STEPS
        earned = len(recent) >= min(200, 8 * max(1, budget // L)) and acc >= ADVANCE_ACC and since_change >= max(MIN_STEPS, 30)
        if earned or forced:
            metrics["curriculum"].append({"length": L, "step": step, "seconds": round(time.time() - train_start, 1),
                                          "train_acc": round(acc, 3), "forced": forced and not earned})
            log(f"curriculum: {L} -> {LENGTHS[L_idx + 1]} at step {step} (train-acc {acc:.3f}{'' if earned else ', forced by time'})")
            L_idx += 1
            since_change = 0
            recent.clear()
    if time.time() >= next_eval:
        select_eval(step)
        next_eval = time.time() + args.eval_every
metrics["phases"]["train_s"] = round(time.time() - train_start, 1)
metrics["steps"] = step
metrics["tokens"] = tokens_seen
metrics["final_length"] = LENGTHS[L_idx]
final_acc = sum(recent) / len(recent) if recent else 0.0
metrics["final_train_acc_at_length"] = round(final_acc, 3)
log(f"training done: {step} steps, {tokens_seen / 1e6:.0f}M tokens, length {LENGTHS[L_idx]}, train-acc {final_acc:.3f}")
if not metrics["select"] or metrics["select"][-1]["step"] != step:  # the last weights are candidates too
    select_eval(step)
if best is not None:
    model.load_state_dict(best["state"])
    metrics["best"] = {"step": best["step"], "score": round(best["score"], 4)}
    log(f"kept the weights of step {best['step']} (selection score {best['score']:.3f})")


# ---------------------------------------------------------------- 5. save the checkpoint (bf16, transformers-4 config dialect) + pack
def pack():
    """MODEL_DIR as an uncompressed tar (model/...) in 15 MiB parts + metrics.json in --pack: few files, each small enough."""
    if not args.pack:
        return
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name in sorted(os.listdir(MODEL_DIR)):
            tf.add(os.path.join(MODEL_DIR, name), arcname=f"model/{name}")
    data = buf.getvalue()
    os.makedirs(args.pack, exist_ok=True)
    for old in glob.glob(os.path.join(args.pack, "model.tar.part-*")):
        os.remove(old)
    part, parts = 15 << 20, []
    for k, i in enumerate(range(0, len(data), part)):
        name = "model.tar.part-" + chr(97 + k // 26) + chr(97 + k % 26)
        with open(os.path.join(args.pack, name), "wb") as f:
            f.write(data[i:i + part])
        parts.append(name)
    metrics["pack"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "parts": parts,
                       "files": sorted(os.listdir(MODEL_DIR))}
    json.dump(metrics, open(os.path.join(args.pack, "metrics.json"), "w"), indent=2)
    log(f"packed {len(data) / 1e6:.1f} MB into {len(parts)} part(s) in {args.pack}")
    if len(parts) > 4:
        log("WARNING: more than 4 parts: with metrics.json and the logs more than 6 files come back")


def guard(what, e):
    """Evaluation and heads must never lose the trained weights, except in --smoke, where every bug must surface."""
    log(f"{what} failed: {e!r}")
    if args.smoke:
        raise e


model.to(torch.bfloat16).save_pretrained(MODEL_DIR, safe_serialization=True)
cpath = os.path.join(MODEL_DIR, "config.json")
c = json.load(open(cpath))
rp = c.pop("rope_parameters", None) or {}
c["rope_theta"] = rp.get("rope_theta", c.get("rope_theta", ROPE_THETA))
c["rope_scaling"] = ROPE_SCALING   # transformers 4 dialect: {"rope_type": "yarn", "factor", "original_max_position_embeddings"}
if "dtype" in c:
    c["torch_dtype"] = c.pop("dtype")
json.dump(c, open(cpath, "w"), indent=2)
json.dump({"eos_token_id": EOS, "pad_token_id": EOS, "do_sample": False, "max_new_tokens": 64},
          open(os.path.join(MODEL_DIR, "generation_config.json"), "w"), indent=2)
model.float()   # now exactly the saved (bf16-rounded) weights: the report and the heads see what ships
log("checkpoint saved")
pack()          # a result exists from here on, whatever happens below

# ---------------------------------------------------------------- 6. report evaluation: the model card's table (seed 7)
try:
    wait_for("report", 10)
    with lock:
        rows = list(eval_sets["report"])
    assert rows, "report samples not loaded"
    t = time.time()
    for L, row in evaluate(rows, REPORT_LENGTHS).items():
        row = {k: round(v, 3) for k, v in row.items()}
        row["mean"] = round(sum(row.values()) / len(row), 3)
        metrics["eval"][str(L)] = row
        log(f"eval {L}: mean {row['mean']:.3f} " + " ".join(f"{k}={a:.2f}" for k, a in row.items() if k != "mean"))
    log(f"report evaluation: {time.time() - t:.1f} s")
except Exception as e:
    guard("evaluation", e)

# ---------------------------------------------------------------- 7. retaining heads (Locret-style), frozen backbone
if args.heads_seconds <= 0:
    kept = os.path.join(args.init, "retaining_heads.safetensors")   # checked at the start
    shutil.copyfile(kept, os.path.join(MODEL_DIR, "retaining_heads.safetensors"))
    metrics["retaining_heads"] = {"steps": 0, "kept": kept}
    log(f"retaining heads: kept {kept} unchanged (--heads-seconds 0)")
else:
    try:
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        nh, nkv, hd = args.heads, args.kv_heads, args.hidden // args.heads
        group = nh // nkv
        heads = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Linear((nh + 2 * nkv) * hd, 1024, bias=False), torch.nn.SiLU(),
                                                         torch.nn.Linear(1024, nkv, bias=False)) for _ in range(args.layers)]).to(dev)
        init_heads = os.path.join(args.init, "retaining_heads.safetensors") if WARM else None
        if init_heads and os.path.exists(init_heads):  # optional: a start closer than random; retrained on the new backbone
            hsd = load_file(init_heads)
            names = {f"model.layers.{i}.self_attn.fc{j + 1}.weight": heads[i][2 * j].weight for i in range(args.layers) for j in range(2)}
            if all(k in hsd and hsd[k].shape == w_.shape for k, w_ in names.items()):
                with torch.no_grad():
                    for k, w_ in names.items():
                        w_.copy_(hsd[k].float())
                log(f"retaining heads start from {init_heads}")
            else:
                log(f"retaining heads: {init_heads} does not match the architecture; starting from random")
        hopt = torch.optim.AdamW(heads.parameters(), lr=1e-3, weight_decay=0.0)
        for p_ in model.parameters():
            p_.requires_grad_(False)
        head_L = max([L for L in (4096, 2048, 1024) if L in pools and ready(L)] or [256])
        head_end = time.time() + (3.0 if args.smoke else max(5.0, min(args.heads_seconds, left() - 20)))
        hstep, hloss = 0, float("nan")
        while time.time() < head_end:
            rows = draw(head_L, 2)
            if not rows:
                break
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
            hopt.zero_grad(set_to_none=True)
            (loss_sum / len(rows)).backward()
            hopt.step()
            hstep += 1
            hloss = float(loss_sum) / len(rows)
            if hstep % 50 == 0:
                log(f"retaining heads: step {hstep} loss {hloss:.4f}")
        metrics["retaining_heads"] = {"steps": hstep, "loss": round(hloss, 4), "length": head_L,
                                      "init": init_heads if init_heads and os.path.exists(init_heads) else None}
        log(f"retaining heads: {hstep} steps at length {head_L}, loss {hloss:.4f}")
        assert hstep > 0, "no retaining-head step ran"
        save_file({f"model.layers.{i}.self_attn.fc{j + 1}.weight": heads[i][2 * j].weight.detach().to(torch.bfloat16).contiguous().cpu()
                   for i in range(args.layers) for j in range(2)}, os.path.join(MODEL_DIR, "retaining_heads.safetensors"))
    except Exception as e:
        guard("retaining heads", e)

stop_gen.set()
for j in jobs:  # generators still running (a short run): ours, by handle
    if j.get("proc") is not None and j["proc"].poll() is None:
        j["proc"].kill()
metrics["parameters"] = nparams
metrics["total_s"] = round(time.time() - T0, 1)
pack()          # the final one, with the retaining heads; it writes --pack/metrics.json
json.dump(metrics, open(os.path.join(OUT, "metrics.json"), "w"), indent=2)
log("saved", sorted(os.listdir(MODEL_DIR)))

if args.smoke:  # the plumbing's checklist; any miss fails the smoke run (and bench/gpu/train.sh stops before the real one)
    problems = [m for m, ok in [
        ("no training step", step > 0),
        ("no selection evaluation", len(metrics["select"]) >= 2 and best is not None),
        ("no report evaluation", bool(metrics["eval"])),
        ("no retaining heads", os.path.exists(os.path.join(MODEL_DIR, "retaining_heads.safetensors"))),
        ("generate failures " + ", ".join(metrics["generate_failures"]), not metrics["generate_failures"]),
        ("no pack", not args.pack or bool(glob.glob(os.path.join(args.pack, "model.tar.part-*"))))] if not ok]
    if LENGTHS[L_idx] != args.max_len:
        log(f"smoke: WARNING: training reached {LENGTHS[L_idx]}, not {args.max_len} (the longest step's memory is untested)")
    if problems:
        log("SMOKE FAILED: " + "; ".join(problems))
        sys.exit(1)
    log("SMOKE OK")
