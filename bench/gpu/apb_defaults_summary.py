#!/usr/bin/env python3
"""Issue #24's bars from the `apb eval ruler --json` files under a folder (`python3 bench/gpu/apb_defaults_summary.py DIR`).

Rows are grouped by (device, seed, length). Each APB row is named by its file (relative to DIR) and the variant read
from the file's command: "defaults" (no --passing, --anchor, --scorer or --novelty-weight: what the binary that ran it
defaults to), "l_p N" (--passing N), "query scorer" (--scorer query). For each group with a full-attention row, prints
full's mean over the tasks, each APB row's mean, its gap to full (positive: APB under full), the worst task but cwe and
whether #24's bars are met (mean within 2 points, every task but cwe within 5). A gap is taken on the tasks both rows
have (full's mean column is over all of its tasks). Standard library only.
"""
import json
import pathlib
import re
import sys


def variant(command):
    if m := re.search(r"--scorer (\S+)", command):
        return f"{m.group(1)} scorer" + (f", l_p {p.group(1)}" if (p := re.search(r"--passing (\d+)", command)) else "")
    if m := re.search(r"--passing (\d+)", command):
        return f"l_p {m.group(1)}"
    if re.search(r"--anchor|--novelty-weight", command):
        return "other"
    return "defaults"


def main(root):
    rows = {}   # (device, seed, length) -> {label: {task: accuracy}}
    for path in sorted(pathlib.Path(root).rglob("*.json")):
        doc = json.loads(path.read_text())
        if "results" not in doc:
            continue
        v = variant(doc.get("command", ""))
        name = path.relative_to(root).with_suffix("")
        for r in doc["results"]:
            label = "full" if r["strategy"] == "full" else f"{r['strategy']} x{r['ranks']} ({v}; {name})"
            key = (doc.get("device", "?"), doc.get("seed", 0), r["length"])
            rows.setdefault(key, {}).setdefault(label, {}).setdefault(r["task"], r["accuracy"] * 100)
    print("| device | seed | length | full | APB (variant; file) | APB mean | gap (bar 2) | worst task but cwe (bar 5) | bars met |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (device, seed, length), by in sorted(rows.items()):
        full = by.get("full")
        if not full:
            continue
        full_mean = sum(full.values()) / len(full)
        for label, apb in sorted(by.items()):
            if label == "full":
                continue
            tasks = [t for t in apb if t in full]
            mean = sum(apb[t] for t in tasks) / len(tasks)
            ref = sum(full[t] for t in tasks) / len(tasks)
            gap = ref - mean
            worst = max((t for t in tasks if t != "cwe"), key=lambda t: full[t] - apb[t])
            worst_gap = full[worst] - apb[worst]
            met = gap <= 2.0 + 1e-9 and worst_gap <= 5.0 + 1e-9
            partial = "" if len(tasks) == len(full) else f" ({len(tasks)} of {len(full)} tasks)"
            print(f"| {device} | {seed} | {length} | {full_mean:.1f} | {label}{partial} | {mean:.1f} | {gap:+.1f} | "
                  f"{worst} {worst_gap:+.1f} | {'yes' if met else '**no**'} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: apb_defaults_summary.py DIR (a folder of apb eval ruler --json files)")
    main(sys.argv[1])
