# Where the multi-key needles APB lost at 32K on 8 ranks sit in their rank's block (session 20's note, "Noticed").
# Samples first (repository root): apb eval generate --tasks niah_multikey_2,niah_multikey_3 --length 32k --samples 60 --out /tmp/mk.jsonl
# then: python3 bench/results/apb-anchor-rows-cpu-20261205/needle_positions.py /tmp/mk.jsonl
# A needle's token index comes from the byte offset of its answer in the context, mapped through the byte-level BPE
# vocabulary of models/embedded/tokenizer.json; a rank's block is 4,088 context tokens (apb inspect --context 32704 --gpus 8).
import bisect, json, sys
tok = json.load(open('models/embedded/tokenizer.json'))
vocab = {v: k for k, v in tok['model']['vocab'].items()}
bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
u2b = {chr(c): b for b, c in zip(bs, cs)}
R = 'bench/results/long-context-20261205/'
def scores(path, strategy):
    return {r['task']: r['scores'] for r in json.load(open(R + path))['results'] if r['strategy'] == strategy}
full, apb = scores('call5-timed-out/x8-32k.json', 'full'), scores('call6-apb/apb-x8-32k.json', 'apb')
BLOCK, NEAR = 4088, 300
count = {}
for line in open(sys.argv[1]):
    s = json.loads(line)
    t, i = s['task'], s['index']
    pieces = [bytes(u2b[ch] for ch in vocab[x]) for x in s['context_ids']]
    offsets, o = [], 0
    for p in pieces:
        offsets.append(o); o += len(p)
    at = bisect.bisect_right(offsets, b''.join(pieces).find(s['answers'][0].encode())) - 1
    where = 'near' if at % BLOCK < NEAR else 'far'
    lost = apb[t][i] < full[t][i]
    count[where, lost] = count.get((where, lost), 0) + 1
for where in ('near', 'far'):
    lost, kept = count.get((where, True), 0), count.get((where, False), 0)
    print(f'needle in the {where} part of its block (first {NEAR} tokens or not): {lost} of {lost + kept} lost by APB')
