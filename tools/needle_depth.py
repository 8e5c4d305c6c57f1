#!/usr/bin/env python3
"""Accuracy by where the asked needle sits (`python3 tools/needle_depth.py SAMPLES.jsonl RESULTS.json [STRATEGY]`).

SAMPLES.jsonl is `apb eval generate --tasks T --lengths L --samples N --seed S --out SAMPLES.jsonl` with the seed,
tasks, length and sample count of the run; RESULTS.json that run's `apb eval ruler --json` file (its per-sample
"scores"). Samples depend only on (seed, task, length, index), so sample i of the file is the run's sample i. For each
task of the run and STRATEGY (default full) it prints the mean score of the samples whose expected answer's needle
("... is: VALUE.", else the value's first appearance) lies in the first, second, third and last quarter of the context
(by characters), with the count in each: whether a model misses needles at some depth more than others. Tasks whose
several answers lie in several places (multi-value, multi-query, vt) are placed by their first answer only. Standard library only.
"""
import json
import sys


def main(samples_path, results_path, strategy="full"):
    samples = {}
    for line in open(samples_path):
        s = json.loads(line)
        samples.setdefault((s["task"], s["length"]), []).append(s)
    results = json.load(open(results_path))
    print(f"| task | length | {strategy}: depth 0-25 % | 25-50 % | 50-75 % | 75-100 % |")
    print("|---|---|---|---|---|---|")
    for row in results["results"]:
        if row["strategy"] != strategy or (row["task"], row["length"]) not in samples:
            continue
        group = sorted(samples[(row["task"], row["length"])], key=lambda s: s["index"])
        scores = row["scores"]
        if len(group) < len(scores):
            sys.exit(f"{samples_path} has {len(group)} samples of {row['task']} at {row['length']}; the run has {len(scores)}: "
                     "generate at least as many, with the run's seed")
        bins = [[] for _ in range(4)]
        for s, score in zip(group, scores):
            # The needle's own sentence ("... for KEY is: VALUE."), else the value's first place in the context (a word
            # value can also stand in the haystack's text before its needle).
            at = s["context"].find(f"is: {s['answers'][0]}.")
            if at < 0:
                at = s["context"].find(s["answers"][0])
            if at < 0:
                continue   # an answer not copied from the context (counting or aggregation tasks): no depth
            bins[min(3, 4 * at // max(1, len(s["context"])))].append(score)
        cells = [f"{sum(b) / len(b):.2f} ({len(b)})" if b else "-" for b in bins]
        print(f"| {row['task']} | {row['length']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(*sys.argv[1:])
