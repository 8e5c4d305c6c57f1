"""Where each needle of the given samples sits (rank, offset in its block) and, for needles of ranks 0-2, how many of its
value tokens (val) and of its sentence (sent) each layer and KV head passed, and the best pooled-score rank of its value tokens.
Usage: selection_of_needles.py SAMPLES.jsonl 3,10,11 SELECTION_DUMP (written by the APB_DIAG_SELECTION patch, docs/notes/apb-4k-diagnosis.patch)."""
import json,sys,collections
tok=json.load(open('models/embedded/tokenizer.json'))
vocab={v:k for k,v in tok['model']['vocab'].items()}
sel=collections.defaultdict(dict)
for line in open(sys.argv[3]):
    f=line.split()
    n,r,L,h,kind=int(f[0]),int(f[1]),int(f[2]),int(f[3]),f[4]
    sel[(n,r,L,h)][kind]=[float(x) for x in f[5:]] if kind=='scores' else [int(x) for x in f[5:]]
want=[int(x) for x in sys.argv[2].split(',')]
for i,l in enumerate(open(sys.argv[1])):
    d=json.loads(l)
    if i not in want: continue
    ids=d['context_ids']; n=len(ids); lb=(n+3)//4
    a=d['answer_ids']; comma=[j for j,t in enumerate(a) if vocab[t]==',']
    parts=[];s=0
    for c in comma+[len(a)]: parts.append(a[s:c]); s=c+1
    print(f'sample {i} n {n} lb {lb}')
    for p in parts:
        core=p[1:]
        hit=[j for j in range(n-len(core)) if ids[j:j+len(core)]==core][0]-1
        span=range(hit-14,hit+len(p))  # sentence "...for KEY is: VALUE"
        vals=range(hit,hit+len(p))
        r=hit//lb
        txt=''.join(vocab[t] for t in ids[span.start:span.stop]).replace('Ġ',' ')
        print(f'  needle {txt!r} pos {hit} rank {r} off {hit-r*lb}')
        if r==3: continue
        for L in range(6):
            row=[]
            for h in range(2):
                e=sel.get((n,r,L,h))
                if not e: row.append('-'); continue
                pk=set(e['picked']); sc=e['scores']
                pooled=[max(sc[max(0,t-2):t+3]) for t in range(len(sc))]
                order=sorted(range(len(pooled)),key=lambda t:-pooled[t])
                rk={t:k for k,t in enumerate(order)}
                nv=sum(1 for t in vals if t in pk); ns=sum(1 for t in span if t in pk)
                best=min(rk[t-r*lb] for t in vals)
                row.append(f'h{h}: val {nv}/{len(vals)} sent {ns}/{len(span)} bestrank {best}')
            print(f'    L{L} '+' | '.join(row))
