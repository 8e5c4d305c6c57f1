#!/usr/bin/env python3
"""Which needle a wrong multi-key answer came from (`python3 tools/multikey_distractors.py SAMPLES.jsonl VERBOSE.log`).

SAMPLES.jsonl is `apb eval ruler --samples-out`, VERBOSE.log its stderr with `-v` (one "[strategy task #i] score
expected [...] got "..."" line per sample). For every sample whose answer is not the expected value, prints the query's
key, the key of the needle whose value was answered (when the answer is a value in the haystack) and the words the two
keys share: a distractor sharing a word with the asked key means the model matched one word of the key, not both. An
answer that is no needle's value is counted apart (digits of two needles mixed, or made up). Standard library only.
"""
import json
import re
import sys

NEEDLE = re.compile(r"for ([\w-]+) is: (\d+)")


def main(samples_path, log_path):
    samples = {}
    for line in open(samples_path):
        s = json.loads(line)
        samples[(s["task"], s["index"])] = s
    shared_any = wrong = unknown = 0
    for line in open(log_path):
        m = re.match(r'\s*\[(.+?) (\w+) #(\d+)\] ([\d.]+) expected \[(.*?)\] got "(.*)"', line)
        if not m or float(m.group(4)) >= 1.0:
            continue
        strategy, task, index, got = m.group(1), m.group(2), int(m.group(3)), m.group(6).strip()
        s = samples.get((task, index))
        if s is None:
            continue
        wrong += 1
        asked = re.search(r"for ([\w-]+)", s["query"]).group(1)
        keys = {value: key for key, value in NEEDLE.findall(s["context"])}
        answered = keys.get(got.split(",")[0].strip())
        common = sorted(set(asked.split("-")) & set(answered.split("-"))) if answered else []
        shared_any += bool(common)
        unknown += answered is None
        print(f"{strategy} {task} #{index}: asked {asked}, answered {got!r} from "
              f"{answered or 'no needle (a value not in the context)'}; shared words: {', '.join(common) or 'none'}")
    print(f"{wrong} wrong answers; {shared_any} from a needle whose key shares a word with the asked key, "
          f"{unknown} a value that is in no needle")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: multikey_distractors.py SAMPLES.jsonl VERBOSE.log")
    main(sys.argv[1], sys.argv[2])
