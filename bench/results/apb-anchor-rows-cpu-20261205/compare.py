# Per-task means of full (GPU), APB before and after 7b4576a (CPU), on the same samples (seed 0, first 10 a task).
# Run from the repository root: python3 bench/results/apb-anchor-rows-cpu-20261205/compare.py
import json
R = 'bench/results/'
D = R + 'apb-anchor-rows-cpu-20261205/'
def rows(path, strategy):
    return {r['task']: r['scores'] for r in json.load(open(path))['results'] if r['strategy'] == strategy}
full = rows(R + 'long-context-20261205/call5-timed-out/x8-32k.json', 'full')
gpu = rows(R + 'long-context-20261205/call6-apb/apb-x8-32k.json', 'apb')
old = rows(D + 'x8-32k-before.json', 'apb')
new = rows(D + 'x8-32k-after.json', 'apb')
cols = [('full (GPU)', full), ('APB before (GPU)', gpu), ('APB before (CPU)', old), ('APB after (CPU)', new)]
print('| 10 samples a task | ' + ' | '.join(c for c, _ in cols) + ' |')
print('|---' * (len(cols) + 1) + '|')
sums = [0.0] * len(cols)
for t in old:
    k = len(old[t])
    vals = [100 * sum(c[t][:k]) / k for _, c in cols]
    sums = [s + v for s, v in zip(sums, vals)]
    print(f'| {t} | ' + ' | '.join(f'{v:.1f}' for v in vals) + ' |')
print(f'| mean of {len(old)} | ' + ' | '.join(f'{s / len(old):.1f}' for s in sums) + ' |')
