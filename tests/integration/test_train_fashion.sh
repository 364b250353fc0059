#!/bin/bash
# ddts train on Fashion-MNIST (Debian's dataset-fashion-mnist): the example
# MLP and CNN, built with `ddts model new`, reach the accuracy bars of the
# engine after 2 epochs at batch size 32, and every result file is written.
set -u
. "$DDTS_SOURCE_DIR/tests/integration/lib.sh"
PY=/usr/bin/python3

for model in mlp cnn; do
    run_expect 0 "$DDTS" model new "$DDTS_SOURCE_DIR/examples/fashion_$model.json" \
        -o "$WORK/$model.h5" --seed 3
    run_expect 0 "$DDTS" train --model "$WORK/$model.h5" --data keras \
        --keras-dataset fashion_mnist --epochs 2 --batch-size 32 --normalizer simple \
        --seed 7 --threads 2 --out "$WORK/out-$model"
    cat "$OUT"
    acc=$(sed -n 's/^val_accuracy: //p' "$OUT")
    want=0.85
    [ "$model" = cnn ] && want=0.88
    echo "$model: test accuracy $acc (bar $want)"
    $PY -c "import sys; sys.exit(0 if float('$acc') >= $want else 1)" ||
        fail "$model: test accuracy $acc < $want"
    for f in model.h5 best_model.h5 history.csv train.log history.png summary.json; do
        [ -s "$WORK/out-$model/$f" ] || fail "$model: $f missing"
    done
    # train.log: each epoch's training steps and validation pass apart, wall
    # and CPU seconds (bench/run.sh's train case reads them); the parts
    # cannot exceed the fit's whole time in summary.json.
    $PY - "$WORK/out-$model/train.log" "$WORK/out-$model/summary.json" <<'PYEOF' || fail "$model: train.log timing"
import json, re, sys
pat = re.compile(r'timing of epoch (\d+): training ([0-9.]+) s, validation ([0-9.]+) s; '
                 r'CPU \(all threads\): training ([0-9.]+) s, validation ([0-9.]+) s')
rows = [pat.search(l) for l in open(sys.argv[1])]
rows = [r for r in rows if r]
assert [int(r.group(1)) for r in rows] == [1, 2], rows
total = sum(float(r.group(2)) + float(r.group(3)) for r in rows)
seconds = json.load(open(sys.argv[2]))['seconds']
assert all(float(r.group(k)) > 0 for r in rows for k in (2, 3, 4, 5)), rows
assert total <= seconds + 0.01, (total, seconds)
print('train.log timing ok: %.2f s of %.2f s' % (total, seconds))
PYEOF
    # history.csv has Keras CSVLogger's columns, one row per epoch.
    $PY - "$WORK/out-$model/history.csv" <<'PYEOF' || fail "$model: history.csv"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert [r['epoch'] for r in rows] == ['0', '1'], rows
cols = list(rows[0].keys())
assert cols == ['epoch', 'accuracy', 'loss', 'val_accuracy', 'val_loss'], cols
assert float(rows[1]['loss']) < float(rows[0]['loss']) * 1.05, rows
print('history.csv ok:', cols)
PYEOF
    # summary.json parses, in its documented order, and agrees with history.csv.
    $PY - "$WORK/out-$model/summary.json" "$WORK/out-$model/history.csv" <<'PYEOF' ||
import csv, json, math, sys
s = json.load(open(sys.argv[1]))
keys = ['run', 'samples', 'epochs', 'seconds', 'samples_per_second', 'loss', 'accuracy',
        'val_loss', 'val_accuracy']
assert list(s.keys()) == keys, list(s.keys())
assert s['epochs'] == 2 and isinstance(s['samples'], int) and s['samples'] > 0, s
last = list(csv.DictReader(open(sys.argv[2])))[-1]
for k in ('loss', 'accuracy', 'val_loss', 'val_accuracy'):
    assert math.isclose(s[k], float(last[k]), rel_tol=1e-8), (k, s[k], last[k])
print('summary.json ok')
PYEOF
        fail "$model: summary.json"
    # The trained file keeps the structure of the file it came from, with new
    # weights, plus the normalizer's Reshape/Normalization/Reshape at the input
    # (test_normalizer_layer.sh checks those layers).
    $PY - "$WORK/$model.h5" "$WORK/out-$model/model.h5" <<'PYEOF' || fail "$model: model.h5 layout"
import json, sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], 'r'), h5py.File(sys.argv[2], 'r')
added = {'reshape', 'normalization', 'reshape_1'}
na, nb = [], []
a.visit(na.append); b.visit(nb.append)
extra = set(nb) - set(na)
assert set(na) <= set(nb) and all(n.split('/')[1] in added for n in extra), (na, nb)
assert dict(a.attrs).keys() == dict(b.attrs).keys()
ca = json.loads(a.attrs['model_config'])['config']['layers']
cb = json.loads(b.attrs['model_config'])['config']['layers']
assert [l for l in cb if l['config']['name'] not in added] == ca
changed = 0
for n in na:
    if isinstance(a[n], h5py.Dataset):
        assert a[n].shape == b[n].shape and a[n].dtype == b[n].dtype, n
        changed += not np.array_equal(a[n][()], b[n][()])
assert changed > 0, 'no weight changed'
print('model.h5 layout ok,', changed, 'datasets changed')
PYEOF
done
finish
