#!/usr/bin/env python3
"""SM clock and board power per marked stretch of a GPU run: `python3 bench/gpu/clock_summary.py clocks.csv marks.txt`.

clocks.csv: `nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv,noheader -lms 50`,
sampled in the background during the run. marks.txt: pairs of lines `MARK HH:MM:SS.mmm start WHAT` and
`MARK HH:MM:SS.mmm end`, written around each command (bench/results/attention-sustained-20261205/call*/run.sh).
Prints a markdown table: per stretch, the samples drawing over 250 W (the card under load, not between commands),
their mean SM clock with its range, and their mean power with its maximum."""
import datetime
import sys


def clock_time(s):
    return datetime.datetime.strptime(s.strip()[-12:], "%H:%M:%S.%f")


def main(clocks_path, marks_path):
    samples = []
    for line in open(clocks_path):
        r = [x.strip() for x in line.split(",")]
        if len(r) >= 4 and "MHz" in r[1]:
            samples.append((clock_time(r[0]), float(r[1].split()[0]), float(r[2].split()[0])))
    marks = [line.split(None, 3) for line in open(marks_path)]
    print("| stretch | samples over 250 W | SM MHz mean (min-max) | W mean (max) |")
    print("|---|---|---|---|")
    for i in range(0, len(marks) - 1, 2):
        a, z = clock_time(marks[i][1]), clock_time(marks[i + 1][1])
        inside = [x for x in samples if a <= x[0] <= z]
        busy = [x for x in inside if x[2] > 250]
        name = marks[i][3].strip().replace("start ", "")
        if busy:
            mhz, watts = [x[1] for x in busy], [x[2] for x in busy]
            print(f"| {name} | {len(busy)} | {sum(mhz) / len(mhz):.0f} ({min(mhz):.0f}-{max(mhz):.0f}) | "
                  f"{sum(watts) / len(watts):.0f} ({max(watts):.0f}) |")
        else:
            print(f"| {name} | 0 of {len(inside)} | - | - |")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
