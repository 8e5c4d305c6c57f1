"""Tables for bench/results/long-context-20261204 (issue #20): `python3 bench/gpu/long_context_summary.py DIR`.

DIR holds call2/*.json (bench/gpu/rope_scaling_eval.sh: full attention on config-only RoPE variants of the 16K model;
call2/128k/*.json the same at 128K on three tasks), call5/full-4k-16k.json and call6/xR-L.json / xR-L-query.json
(`apb eval ruler` on run 5's model: full, star, apb with the retaining heads and apb-balanced at L tokens on R
in-process ranks; then apb with the query-aware scorer, same samples), and the same for run 6's model (session 13):
call11/s0-4k-16k.json (full and apb at 4K and 16K) and call11/xR-L*.json, whose 8-rank runs leave full out (full
attention does not depend on the ranks: the 4-rank run's full column is the same samples).
A run cut short by its timeout left no JSON; its per-task lines in xR-L.log are read instead, and the table says which
strategies are partial. Prints markdown.
"""
import glob, json, os, re, sys
from collections import defaultdict

D = sys.argv[1]
TASKS = ["niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2", "niah_multikey_3",
         "niah_multivalue", "niah_multiquery", "vt", "cwe", "fwe"]
SHORT = {"niah_single_1": "s1", "niah_single_2": "s2", "niah_single_3": "s3", "niah_multikey_1": "mk1",
         "niah_multikey_2": "mk2", "niah_multikey_3": "mk3", "niah_multivalue": "mv", "niah_multiquery": "mq",
         "vt": "vt", "cwe": "cwe", "fwe": "fwe"}


def load(path):
    """{(strategy label, length): {task: accuracy x100}} from a harness JSON."""
    r = defaultdict(dict)
    for x in json.load(open(path))["results"]:
        label = x["strategy"] if x["ranks"] == 1 else f'{x["strategy"]} x{x["ranks"]}'
        r[(label, x["length"])][x["task"]] = 100 * x["accuracy"]
    return r


def load_log(path):
    """The same from the per-task progress lines of a run that left no JSON."""
    r = defaultdict(dict)
    for line in open(path):
        m = re.match(r"(.+?) (\d+) (\w+): ([\d.]+) \(\d+ samples", line.strip())
        if m:
            r[(m.group(1), int(m.group(2)))][m.group(3)] = float(m.group(4))
    return r


def shape(name):
    """(ranks, length) of a run named xR-LENk."""
    return int(name[1]), int(name.split("-")[1][:-1]) * 1024


def run_rows(call, name):
    """A run's rows by (strategy label without the scorer, length): from its JSON or, cut short, its log."""
    main = os.path.join(D, call, name + ".json")
    partial = not os.path.exists(main) or os.path.getsize(main) == 0   # the harness opens --json first
    res = load(main) if not partial else load_log(os.path.join(D, call, name + ".log"))
    # The JSON keeps the scorer in a row's "variant", the log's lines in the label ("apb x8 (retaining heads)"): the
    # bare name is the key for both (the query-aware runs are files of their own).
    return {(k.replace(" (retaining heads)", ""), n): v for (k, n), v in res.items()}


def mean(d):
    return sum(d[t] for t in TASKS) / len(TASKS) if all(t in d for t in TASKS) else None


def fmt(x):
    return "-" if x is None else f"{x:.1f}"


def full_by_length(short, call):
    """A model's full-attention rows by length: the short lengths from SHORT, 32K and 64K from the call's 4-rank runs."""
    rows = {}
    for path in [os.path.join(D, short)] + [os.path.join(D, call, name + ".json") for name in ("x4-32k", "x4-64k")]:
        rows.update({L: t for (s, L), t in load(path).items() if s == "full"})
    return rows


# 1. Full attention: config-only RoPE variants of the 16K model against the fine-tuned, shipped one.
print("## Full attention, 20 samples per task (seed 0), mean over 11 tasks and the #20 bar's tasks\n")
variants = {}
for p in sorted(glob.glob(os.path.join(D, "call2", "*.json"))):
    variants[os.path.basename(p)[:-5]] = {L: t for (s, L), t in load(p).items()}
shipped = full_by_length("call5/full-4k-16k.json", "call6")
variants["run 5: yarn8 + 131 fine-tuning steps (shipped until session 13)"] = shipped
variants["run 6 (shipped): run 5 + 652 steps weighted to shared-word multi-key (call10-train)"] = \
    full_by_length("call11/s0-4k-16k.json", "call11")
lengths = sorted({L for v in variants.values() for L in v})
print("| model | " + " | ".join(f"{L // 1024}K mean" for L in lengths) + " | " +
      " | ".join(f"{L // 1024}K s1 / mk1 / mk2 / mk3 / vt" for L in lengths if L >= 32768) + " |")
print("|---" * (1 + len(lengths) + sum(L >= 32768 for L in lengths)) + "|")
for name, v in variants.items():
    cells = [fmt(mean(v.get(L, {}))) for L in lengths]
    cells += [" / ".join(fmt(v.get(L, {}).get(t)) for t in ("niah_single_1", "niah_multikey_1", "niah_multikey_2",
                                                             "niah_multikey_3", "vt")) for L in lengths if L >= 32768]
    print(f"| {name} | " + " | ".join(cells) + " |")

print("\nAt 128K (call2/128k, 8 samples per task, full attention): " + "; ".join(
    f"{os.path.basename(p)[:-5]} " + ", ".join(f"{SHORT[t]} {fmt(a)}" for (s_, L), r in load(p).items() for t, a in r.items())
    for p in sorted(glob.glob(os.path.join(D, "call2", "128k", "*.json")))))

# 2. Where APB runs: a model at 32K and 64K on 4 and 8 ranks.
def where_apb_runs(call, title, rerun_call=None):
    print(f"\n## Accuracy where APB runs ({title}, 20 samples per task, the same samples in every column)\n")
    print("| length | ranks | full | star | apb (retaining heads) | apb (query-aware) | apb-balanced (retaining) | "
          "apb - full | apb ahead of star on mk1-3 / mv / vt |")
    print("|---|---|---|---|---|---|---|---|---|")
    per_task, apb_rows = [], {}
    for name in ("x4-32k", "x8-32k", "x4-64k", "x8-64k"):
        R, L = shape(name)
        res = run_rows(call, name)
        get = lambda key: res.get((key, L), {})
        full, star, apb, bal = get("full"), get(f"star x{R}"), get(f"apb x{R}"), get(f"apb-balanced x{R}")
        if not full:   # an 8-rank run without full: the 4-rank run's, same samples
            full = run_rows(call, f"x4-{name.split('-')[1]}").get(("full", L), {})
        apb_rows[name] = apb
        rerun = os.path.join(D, rerun_call or "-", name + "-balanced.json")   # a balanced run made again with the time to finish
        if os.path.exists(rerun):
            bal = load(rerun).get((f"apb-balanced x{R}", L), bal)
        query = load(os.path.join(D, call, name + "-query.json")).get((f"apb x{R}", L), {})
        ahead = []
        for t in ("niah_multikey_1", "niah_multikey_2", "niah_multikey_3", "niah_multivalue", "vt"):
            if t in apb and t in star:
                ahead.append(">" if apb[t] > star[t] else "=" if apb[t] == star[t] else "<")
        d = mean(apb) - mean(full) if mean(apb) is not None and mean(full) is not None else None
        bal_cell = fmt(mean(bal)) if mean(bal) is not None else f"partial ({len(bal)} of 11 tasks)"
        print(f"| {L // 1024}K | {R} | {fmt(mean(full))} | {fmt(mean(star))} | {fmt(mean(apb))} | {fmt(mean(query))} | {bal_cell} | "
              f"{'-' if d is None else f'{d:+.1f}'} | {' '.join(ahead)} |")
        per_task.append((f"{L // 1024}K x{R}", full, star, apb, query, bal))

    print(f"\n## Per task, {title} (full / star / apb retaining / apb query-aware / apb-balanced)\n")
    print("| run | " + " | ".join(SHORT[t] for t in TASKS) + " |")
    print("|---" * (1 + len(TASKS)) + "|")
    for run, *cols in per_task:
        print(f"| {run} | " + " | ".join(" / ".join(fmt(c.get(t)) for c in cols) for t in TASKS) + " |")
    return apb_rows


where_apb_runs("call11", "run 6, the shipped model")
apb_default = where_apb_runs("call6", "run 5's model", rerun_call="call7")   # section 4 sets the l_p sweep beside them

# 3. A fine-tune aimed at multi-key (call8-train): full attention on the bar's tasks, against run 5's model,
# and the warm start weighted to shared-word multi-key (call10-train, run 6), with that task's own score.
tuned_path = os.path.join(D, "call8-train", "eval-full.json")
run6_path = os.path.join(D, "call10-train", "eval-full.json")
if os.path.exists(tuned_path):
    tuned = {L: t for (s_, L), t in load(tuned_path).items()}
    run6_eval = {L: t for (s_, L), t in load(run6_path).items()} if os.path.exists(run6_path) else {}
    print("\n## Full attention after the two fine-tunes (call8-train: more multi-key samples; call10-train: shared-word "
          "multi-key, run 6) against run 5's model, 20 samples per task\n")
    bar = ["niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2", "niah_multikey_3", "vt",
           "niah_multikey_2_shared"]
    SHORT["niah_multikey_2_shared"] = "mk2 shared"
    print("| length | model | " + " | ".join(SHORT[t] for t in bar) + " |")
    print("|---" * (2 + len(bar)) + "|")
    for L in sorted(tuned):
        for name, v in (("run 5", shipped.get(L, {})), ("multi-key fine-tune", tuned[L]), ("run 6", run6_eval.get(L, {}))):
            print(f"| {L // 1024}K | {name} | " + " | ".join(fmt(v.get(t)) for t in bar) + " |")

# 4. APB's passing length where APB runs (call9-passing), against the default of the same run's call6 table.
sweep = sorted(glob.glob(os.path.join(D, "call9-passing", "*.json")))
if sweep:
    print("\n## APB (retaining heads) by passing length l_p, 20 samples per task; the default is n/64 (call6)\n")
    print("| run | l_p | mean | mk2 / mk3 / mv / mq / vt |")
    print("|---|---|---|---|---|")
    runs = {}
    for p in sweep:
        name, lp = os.path.basename(p)[:-5].rsplit("-lp", 1)
        R, L = shape(name)
        runs[(name, int(lp))] = load(p).get((f"apb x{R}", L), {})
        runs[(name, L // 64)] = apb_default[name]
    for (name, lp), t in sorted(runs.items()):
        R, L = shape(name)
        tag = " (default)" if lp == L // 64 else ""
        print(f"| {L // 1024}K x{R} | {lp}{tag} | {fmt(mean(t))} | " + " / ".join(fmt(t.get(k)) for k in
              ("niah_multikey_2", "niah_multikey_3", "niah_multivalue", "niah_multiquery", "vt")) + " |")

