#!/usr/bin/env python3
"""The summary of bench/gpu/scorer_tune.sh: issue #24's bars for every APB variant it ran, and the variant it confirms.

Usage: scorer_tune_summary.py DEST SEED CONFIRM_SEED SHORT LONG

Reads DEST/seedS-LENGTH-NAME.json (`apb eval ruler --json`: APB's rows, and full's in the tables that ran it), writes
DEST/summary.md (also printed), DEST/summary.json and DEST/pick.txt (the variant to confirm; empty when none qualifies).
A variant is measured against full on the same seed and length, from whichever table of that seed and length ran full.
#24's bars, per length: APB within 2 points of full on the mean over the tasks, and within 5 on every task but cwe.
The pick, a rule fixed before the run: among the variants with tables at both lengths on SEED, the fewest bars missed
(of 4), then the smallest mean gap at SHORT (the bar the defaults miss there), then at LONG; on a tie the defaults, then
the name.
"""
import json
import os
import re
import sys

MEAN_BAR, TASK_BAR = 2.0, 5.0


VARIANT_FLAGS = ("--anchor", "--passing", "--novelty-weight")


def tables(dest):
    """{(seed, length, name): ({strategy: {task: accuracy in points}}, APB's flags)} for every table with results."""
    out = {}
    for f in sorted(os.listdir(dest)):
        m = re.fullmatch(r"seed(\d+)-([^-]+)-(.+)\.json", f)
        path = os.path.join(dest, f)
        # A table that failed or timed out leaves no file or an empty one (its error is in tune.log).
        if not m or os.path.getsize(path) == 0:
            continue
        run = json.load(open(path))
        rows = {}
        for r in run["results"]:
            rows.setdefault(r["strategy"], {})[r["task"]] = 100 * r["accuracy"]
        words = run["command"].split()
        flags = " ".join(f"{w} {words[i + 1]}" for i, w in enumerate(words[:-1]) if w in VARIANT_FLAGS)
        out[(int(m.group(1)), m.group(2), m.group(3))] = (rows, flags)
    return out


def mean(d):
    return sum(d.values()) / len(d)


def compare(full, apb):
    """APB against full on their common tasks: means, the mean gap, the worst task but cwe, the bars missed."""
    common = [t for t in full if t in apb]
    f, a = mean({t: full[t] for t in common}), mean({t: apb[t] for t in common})
    worst = max(((full[t] - apb[t], t) for t in common if t != "cwe"), default=(0.0, "-"))
    missed = int(f - a > MEAN_BAR) + int(worst[0] > TASK_BAR)
    return {"apb": a, "full": f, "gap": f - a, "worst_task": worst[1], "worst_gap": worst[0], "missed": missed,
            "tasks": len(common)}


def main():
    dest, seed, confirm_seed, short, long_ = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    t = tables(dest)
    fulls, notes = {}, []
    for (s, length, name), (rows, _) in t.items():
        if "full" not in rows:
            continue
        if (s, length) in fulls and fulls[(s, length)][1] != rows["full"]:
            notes.append(f"full differs between tables of seed {s} at {length} ({fulls[(s, length)][0]} and {name}): "
                         f"the one of {fulls[(s, length)][0]} is used")
            continue
        fulls.setdefault((s, length), (name, rows["full"]))

    results = {}  # (seed, name) -> {length: comparison}
    for (s, length, name), (rows, flags) in sorted(t.items()):
        if "apb" not in rows:
            continue
        if (s, length) not in fulls:
            notes.append(f"seed {s} {length} {name}: no full attention table on that seed and length to compare with")
            continue
        results.setdefault((s, name), {})[length] = dict(compare(fulls[(s, length)][1], rows["apb"]), flags=flags)

    def key(item):
        (_, name), by = item
        # On a tie the defaults win: a variant must do better than them to be picked.
        return (by[short]["missed"] + by[long_]["missed"], by[short]["gap"], by[long_]["gap"], name != "defaults", name)

    candidates = sorted(((k, v) for k, v in results.items() if k[0] == seed and short in v and long_ in v), key=key)
    pick = candidates[0][0][1] if candidates else ""
    with open(os.path.join(dest, "pick.txt"), "w") as f:
        f.write(pick)

    def cell(c):
        if c is None:
            return ["-"] * 5
        ok = lambda met: "met" if met else "**not met**"
        return [f"{c['apb']:.1f}", f"{c['full']:.1f}", f"{c['gap']:+.1f} ({ok(c['gap'] <= MEAN_BAR)})",
                f"{c['worst_task']} {c['worst_gap']:+.1f} ({ok(c['worst_gap'] <= TASK_BAR)})",
                "yes" if c["missed"] == 0 else "no"]

    def flags(by):
        f = [by[length]["flags"] for length in (short, long_) if length in by]
        return "-" if not any(f) else f[0] if len(set(f)) == 1 else f"{f[0]} ({short}), {f[1]} ({long_})"

    head = ["seed", "variant", "APB flags"]
    for length in (short, long_):
        head += [f"{length} APB", f"{length} full", f"{length} mean gap (bar {MEAN_BAR:g})",
                 f"{length} worst task but cwe (bar {TASK_BAR:g})", f"{length} bars met"]
    head.append("both lengths met")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = lambda k: (k[0] != seed, k[0], k[1] != "defaults", k[1])
    for (s, name) in sorted(results, key=order):
        by = results[(s, name)]
        both = short in by and long_ in by and by[short]["missed"] + by[long_]["missed"] == 0
        lines.append("| " + " | ".join([str(s), name, flags(by)] + cell(by.get(short)) + cell(by.get(long_)) +
                                       ["**yes**" if both else "no"]) + " |")
    text = [f"# APB variants against full attention (#24's bars), tuned on seed {seed}, confirmed on seed {confirm_seed}",
            "", "Gaps are full minus APB in points (positive: APB under full); APB flags: what the variant adds to "
            "the defaults (each table's JSON has its whole command).", ""] + lines + [""]
    if candidates:
        (_, name), by = candidates[0]
        missed = by[short]["missed"] + by[long_]["missed"]
        text.append(f"Pick on seed {seed} (fewest bars missed, then the smallest mean gap at {short}, then at {long_}): "
                    f"**{name}**, {missed} of 4 bars missed, mean gap {by[short]['gap']:+.1f} at {short} and "
                    f"{by[long_]['gap']:+.1f} at {long_}." +
                    ("" if missed == 0 else " No variant met every bar on this seed."))
        confirmed = results.get((confirm_seed, name), {})
        if short in confirmed and long_ in confirmed:
            ok = confirmed[short]["missed"] + confirmed[long_]["missed"] == 0
            text.append(f"On seed {confirm_seed}: {name} {'meets' if ok else 'does NOT meet'} every bar at both lengths "
                        f"(mean gap {confirmed[short]['gap']:+.1f} at {short}, {confirmed[long_]['gap']:+.1f} at {long_}).")
        else:
            text.append(f"On seed {confirm_seed}: {name} has no tables at both lengths (not run yet, skipped or failed).")
    else:
        text.append(f"No pick: no variant has tables at both {short} and {long_} on seed {seed}.")
    text += [f"Note: {n}" for n in notes]
    md = "\n".join(text) + "\n"
    with open(os.path.join(dest, "summary.md"), "w") as f:
        f.write(md)
    with open(os.path.join(dest, "summary.json"), "w") as f:
        json.dump({"seed": seed, "confirm_seed": confirm_seed, "pick": pick, "notes": notes,
                   "mean_bar": MEAN_BAR, "task_bar": TASK_BAR,
                   "variants": [{"seed": s, "variant": name, **{length: c for length, c in by.items()}}
                                for (s, name), by in sorted(results.items(), key=lambda kv: order(kv[0]))]}, f, indent=1)
    print(md, end="")


if __name__ == "__main__":
    main()
