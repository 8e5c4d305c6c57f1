"""Failed samples of an `apb eval ruler --verbose` log, each expected value with its rank and offset in its block.
Usage: failures_by_position.py SAMPLES.jsonl (--samples-out) VERBOSE.log"""
import json,re,sys
tok=json.load(open('models/embedded/tokenizer.json'))
vocab={v:k for k,v in tok['model']['vocab'].items()}
samples={}
for l in open(sys.argv[1]):
    d=json.loads(l); samples[(d['task'],d['index'])]=d
out={}
for line in open(sys.argv[2]):
    m=re.match(r'\s+\[(.*?) (\S+) #(\d+)\] (\S+) expected \[(.*?)\] got "(.*)"',line)
    if m: out[(m.group(1),m.group(2),int(m.group(3)))]=(float(m.group(4)),m.group(6))
def where(d,ans):
    ids=d['context_ids']; n=len(ids); lb=(n+3)//4
    c=d['context']; p=c.find(ans)
    # token position by decoding prefix length: approximate via char ratio then refine via answer tokens
    a=d['answer_ids']; comma=[j for j,t in enumerate(a) if vocab[t]==',']
    parts=[];s=0
    for cc in comma+[len(a)]: parts.append(a[s:cc]); s=cc+1
    for pp,aa in zip(parts,d['answers']):
        if aa==ans:
            core=pp[1:]
            hits=[j-1 for j in range(n-len(core)) if ids[j:j+len(core)]==core]
            if hits: return f'r{hits[0]//lb}+{hits[0]%lb}'
    return f'char{p/len(c):.2f}'
strats=sorted(set(k[0] for k in out))
for (task,i),d in sorted(samples.items()):
    res={s:out.get((s,task,i)) for s in strats}
    if all(r is None or r[0]==1 for r in res.values()): continue
    print(task,i,' '.join(f"{a}@{where(d,a)}" for a in d['answers']))
    for s,r in res.items():
        if r and r[0]<1: print('    ',s,r)
