import json
import sys; R='bench/results/long-context-20261205/'
f=json.load(open(R+'call5-timed-out/x8-32k.json'));a=json.load(open(R+'call6-apb/apb-x8-32k.json'))
c=json.load(open('bench/results/apb-32k-anchor-cpu-20261205/all-tasks10-a0.json'))
full={r['task']:r['scores'] for r in f['results'] if r['strategy']=='full'}
apb={r['task']:r['scores'] for r in a['results']}
tot=[0,0,0];n=0
print('task full apb(default,GPU) apb(anchor0,CPU)')
for r in c['results']:
  t=r['task'];k=len(r['scores'])
  fs=sum(full[t][:k])/k*100; as_=sum(apb[t][:k])/k*100; cs=sum(r['scores'])/k*100
  print(f'{t:18s} {fs:6.1f} {as_:6.1f} {cs:6.1f}')
  tot[0]+=fs;tot[1]+=as_;tot[2]+=cs;n+=1
print('mean', *[round(x/n,1) for x in tot], n)
