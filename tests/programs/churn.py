# churn.py: allocation-heavy Python work whose output is deterministic.
# tests/test_programs.c runs it with and without LD_PRELOAD=libptm.so (and
# PYTHONMALLOC=malloc, so every object goes through malloc) and compares
# the output byte for byte.
import hashlib
import json
import random
import sys
import threading
from collections import Counter, OrderedDict, defaultdict

rng = random.Random(20240601)


def digest(obj):
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]


# Dict and list churn: grow, shrink, rebuild.
d = {}
for i in range(30000):
    d["key%d" % rng.randrange(100000)] = [i] * (i % 7)
    if i % 3 == 0:
        d.pop("key%d" % rng.randrange(100000), None)
print("dict", len(d), digest(sorted(d.items())[:500]))

lists = [[rng.random() for _ in range(rng.randrange(1, 200))] for _ in range(3000)]
for _ in range(5):
    lists = [l[::2] + l[1::2] for l in lists if len(l) % 5]
    lists.extend([[x * 2.0 for x in l] for l in lists[:300]])
print("lists", len(lists), sum(len(l) for l in lists), round(sum(sum(l) for l in lists), 6))

# JSON round trips of nested structures.
doc = {
    "users": [
        {
            "id": i,
            "name": "user-%05d" % i,
            "tags": ["t%d" % (i * k % 97) for k in range(i % 11)],
            "score": (i * 7919) % 10007 / 7.0,
            "nested": {"a": list(range(i % 13)), "b": {"c": "x" * (i % 50)}},
        }
        for i in range(3000)
    ]
}
for rnd in range(3):
    text = json.dumps(doc, sort_keys=True, indent=1 if rnd % 2 else None)
    doc = json.loads(text)
    doc["users"].append({"id": -rnd, "name": "r%d" % rnd, "tags": [], "score": 0.5,
                         "nested": {"a": [], "b": {"c": ""}}})
print("json", len(text), hashlib.sha256(text.encode()).hexdigest()[:16])

# Sorting many objects several ways.
recs = [(rng.randrange(1000), "s%06d" % rng.randrange(10 ** 6), rng.random()) for _ in range(50000)]
a = sorted(recs)
b = sorted(recs, key=lambda r: (r[1], -r[0]))
c = sorted(recs, key=lambda r: r[2], reverse=True)
print("sort", digest(a[:100] + a[-100:]), digest(b[:100]), digest(c[:100]))

# Big strings: join, replace, split, bytes.
parts = ["%d:%s" % (i, "abc" * (i % 40)) for i in range(60000)]
big = "|".join(parts)
big2 = big.replace("abc", "XYZW").upper()
pieces = big2.split("|")
blob = big2.encode() * 3
print("strings", len(big), len(big2), len(pieces), len(blob), hashlib.md5(blob).hexdigest())

words = Counter()
od = OrderedDict()
dd = defaultdict(list)
for i, p in enumerate(pieces[:50000]):
    words[p[-3:]] += 1
    od[p] = i
    dd[len(p)].append(i)
    if len(od) > 1000:
        od.popitem(last=False)
print("collections", words.most_common(3), len(od), len(dd), sum(map(len, dd.values())))


# Threads: each builds and tears down its own structures; results are
# gathered per thread so the output does not depend on scheduling.
def work(tid, out):
    r = random.Random(tid)
    acc = {}
    for i in range(15000):
        k = r.randrange(5000)
        acc.setdefault(k, []).append("v%d" % i)
        if len(acc[k]) > 8:
            acc[k] = acc[k][4:]
    s = json.dumps(acc, sort_keys=True)
    out[tid] = (len(acc), len(s), hashlib.sha1(s.encode()).hexdigest()[:12])


results = {}
threads = [threading.Thread(target=work, args=(t, results)) for t in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for tid in sorted(results):
    print("thread", tid, *results[tid])

print("done")
sys.stdout.flush()
