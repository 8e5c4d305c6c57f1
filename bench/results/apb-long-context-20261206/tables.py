"""Issue #20's accuracy tables on the shipped model (run 12), one per setting: `python3 tables.py > tables.md` here.

Each setting's columns come from `apb eval ruler` JSON files of the same seed (0) and samples, some made in earlier
sessions (the paths say which); every file records its build, device and weights. Accuracy in percent, per task and
the mean over the tasks the column has. The paired differences with their intervals, by task group too
(`apb eval paired ... --tasks`), are paired.sh's (paired.txt).
"""
import json, os

TASKS = ["niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2", "niah_multikey_3",
         "niah_multivalue", "niah_multiquery", "vt", "cwe", "fwe"]
R12, BUD = "../train-run12-20261206", "../apb-passing-budget-20261206"

# (setting, [(column, file, strategy in the file)])
SETTINGS = [
    ("64K, 8 ranks, 60 samples a task", [
        ("full", f"{R12}/call1/n-full-64k.json", "full"),
        ("Star", f"{R12}/call2/n-star-x8-64k.json", "star"),
        ("APB", f"{BUD}/call2/n-x8-64k-b1024.json", "apb"),
        ("APB, query-aware", "call2/n-x8-64k-query.json", "apb"),
        ("balanced APB", "call1/n-balanced-x8-64k.json", "apb-balanced"),
    ]),
    ("64K, 4 ranks, 60 samples a task", [
        ("full", f"{R12}/call1/n-full-64k.json", "full"),
        ("Star", "call2/n-star-x4-64k.json", "star"),
        ("APB", "call2/n-x4-64k.json", "apb"),
        ("APB, query-aware", "call4/n-x4-64k-query.json", "apb"),
        ("balanced APB", "call4/n-balanced-x4-64k.json", "apb-balanced"),
    ]),
    ("32K, 4 ranks, 60 samples a task", [
        ("full", f"{R12}/call2/n-full-32k.json", "full"),
        ("Star", "call1/n-star-x4-32k.json", "star"),
        ("APB", "call1/n-x4-32k.json", "apb"),
        ("APB, query-aware", "call1/n-x4-32k-query.json", "apb"),
        ("balanced APB", "call1/n-balanced-x4-32k.json", "apb-balanced"),
    ]),
    ("32K, 8 ranks, 60 samples a task", [
        ("full", f"{R12}/call2/n-full-32k.json", "full"),
        ("Star", "call2/n-star-x8-32k.json", "star"),
        ("APB", "call2/n-x8-32k.json", "apb"),
        ("APB, query-aware", "call3/n-x8-32k-query.json", "apb"),
        ("balanced APB", "call3/n-balanced-x8-32k.json", "apb-balanced"),
    ]),
    ("multi-key, 64K, 8 ranks, 200 samples a task", [
        ("full", f"{R12}/call3/mk-x8-64k.json", "full"),
        ("Star", f"{R12}/call3/mk-x8-64k.json", "star"),
        ("APB", f"{BUD}/call2/mk-x8-64k-b1024.json", "apb"),
        ("balanced APB", f"{BUD}/call3/mk-x8-64k-balanced-b1024.json", "apb-balanced"),
    ]),
    ("multi-key, 32K, 4 ranks, 200 samples a task", [
        ("full", f"{R12}/call4/mk-x4-32k.json", "full"),
        ("Star", f"{R12}/call4/mk-x4-32k.json", "star"),
        ("APB", "call1/mk-x4-32k.json", "apb"),
    ]),
]


def rows(path, strategy):
    """{task: accuracy x100} of one strategy in a harness file; None when the file is missing."""
    if not os.path.exists(path):
        return None
    return {x["task"]: 100 * x["accuracy"] for x in json.load(open(path))["results"] if x["strategy"] == strategy}


for setting, columns in SETTINGS:
    cols = [(name, rows(path, s)) for name, path, s in columns]
    missing = [name for name, r in cols if r is None]
    cols = [(name, r) for name, r in cols if r is not None]
    tasks = [t for t in TASKS if any(t in r for _, r in cols)]
    print(f"### {setting}\n")
    print("| task | " + " | ".join(name for name, _ in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for t in tasks:
        print(f"| {t} | " + " | ".join(f"{r[t]:.1f}" if t in r else "-" for _, r in cols) + " |")
    means = [sum(r[t] for t in tasks if t in r) / max(1, sum(t in r for t in tasks)) for _, r in cols]
    print("| **mean** | " + " | ".join(f"**{m:.1f}**" for m in means) + " |")
    if missing:
        print(f"\nNot run: {', '.join(missing)}.")
    print()

