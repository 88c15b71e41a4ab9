import json
P='/work/main/book/melon.ipynb'
nb=json.load(open(P))
n=0
for c in nb['cells']:
    if c['cell_type']!='markdown': continue
    s=''.join(c['source']) if isinstance(c['source'], list) else c['source']
    old='''* **SML** runs one task per mini-batch'''
    new='''* **The authors' code** differs from the paper in places; we follow the
  paper and name them: its role MLP has no $\\theta$ input and one layer,
  its interaction MLP has BatchNorm, its update is the forget-gate cell of
  our `MeLON-code` row, it updates every parameter (no selective update),
  it trains Default and the recommender with Adam (we use SGD, eq. 1), and
  it meta-trains offline for up to 100 epochs and picks the epoch on the
  first batch of the online *test* (we choose the passes on the warm-up).
* **SML** runs one task per mini-batch'''
    if old in s and "The authors' code" not in s:
        s=s.replace(old,new); n+=1
    c['source']=s
json.dump(nb, open(P,'w'), indent=1, ensure_ascii=False)
open(P,'a').write('\n')
print('replaced', n)
