#!/usr/bin/env python3
"""Which needle a wrong multi-key answer came from (`python3 tools/multikey_distractors.py SAMPLES.jsonl VERBOSE.log`).

SAMPLES.jsonl is `apb eval ruler --samples-out`, VERBOSE.log its stderr with `-v` (one "[strategy task #i] score
expected [...] got "..."" line per sample). For every sample whose answer is not the expected value, prints the query's
key, the key of the needle whose value was answered (when the answer is a value in the haystack), how many needles
away from the asked one it is, and, for word keys, the words the two keys share (for uuid keys, the leading characters
they share): a distractor sharing a word with the asked key means the model matched one word of the key, not both. An
answer that is no needle's value is counted apart (digits of two needles mixed, or made up). Each line also says for
how many characters the answer follows the expected value ("copied N"): a uuid answer that starts right and then goes
astray is a copying error, not a wrong needle. Standard library only.
"""
import json
import re
import sys

NEEDLE = re.compile(r"for ([\w-]+) is: ([\w-]+)\.")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def common_prefix(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def shared(asked, other):
    """The words two keys share, or for uuid keys their common leading characters."""
    if UUID.match(asked):
        p = common_prefix(asked, other)
        return [p] if p else []
    return sorted(set(asked.split("-")) & set(other.split("-")))


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
        expected = m.group(5).split(",")[0].strip()
        wrong += 1
        asked = re.search(r"for ([\w-]+) mentioned", s["query"]).group(1)
        needles = NEEDLE.findall(s["context"])
        order = {key: i for i, (key, _) in enumerate(needles)}
        by_value = {value: key for key, value in needles}
        answer = got.split(",")[0].strip().rstrip(".")
        answered = by_value.get(answer)
        common = shared(asked, answered) if answered else []
        shared_any += bool(common)
        unknown += answered is None
        where = f", {order[answered] - order[asked]:+d} needles from the asked one" if answered and asked in order else ""
        copied = len(common_prefix(answer, expected))
        print(f"{strategy} {task} #{index}: asked {asked}, answered {got!r} from "
              f"{answered or 'no needle (a value not in the context)'}{where}; shared: {', '.join(common) or 'none'}; "
              f"copied {copied} of {len(expected)}")
    print(f"{wrong} wrong answers; {shared_any} from a needle whose key shares a word (uuid: leading characters) with "
          f"the asked key, {unknown} a value that is in no needle")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: multikey_distractors.py SAMPLES.jsonl VERBOSE.log")
    main(sys.argv[1], sys.argv[2])
