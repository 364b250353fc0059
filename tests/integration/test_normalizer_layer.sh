#!/bin/bash
# The job's normalizer travels with the model (issue 4): trained with
# --normalizer zscore (and minmax), the saved models hold a Keras
# Normalization layer at the input, so that they work on RAW data: `ddts
# evaluate` on the raw test split gives the training run's val_accuracy, and
# h5py shows the layer's mean/variance equal to numpy's over the training
# samples. Without a normalizer the model is written in place, as before.
set -u
. "$DDTS_SOURCE_DIR/tests/integration/lib.sh"
PY=/usr/bin/python3
FMNIST=/usr/share/datasets/fashion-mnist

run_expect 0 "$DDTS" model new "$DDTS_SOURCE_DIR/examples/fashion_mlp.json" -o "$WORK/mlp.h5" \
    --seed 3

for norm in zscore minmax; do
    run_expect 0 "$DDTS" train --model "$WORK/mlp.h5" --data keras --keras-dataset fashion_mnist \
        --samples 3000 --epochs 1 --normalizer $norm --seed 5 --threads 2 --out "$WORK/$norm"
    val=$(sed -n 's/^val_accuracy: //p' "$OUT")
    for f in model best_model; do
        [ -s "$WORK/$norm/$f.h5" ] || fail "$norm: $f.h5 missing"
        # On raw data, the saved model reproduces the training run's validation accuracy.
        run_expect 0 "$DDTS" evaluate --model "$WORK/$norm/$f.h5" --keras-dataset fashion_mnist \
            --threads 2
        acc=$(sed -n 's/^accuracy: //p' "$OUT")
        echo "$norm $f: val_accuracy $val, evaluate on raw data $acc"
        [ "$f" = best_model ] && continue # best by val_loss: the one epoch here
        $PY -c "import sys; sys.exit(0 if abs(float('$acc') - float('$val')) <= 1e-4 else 1)" ||
            fail "$norm $f: accuracy on raw data $acc != val_accuracy $val"
    done
    $PY - "$norm" "$WORK/mlp.h5" "$WORK/$norm/model.h5" "$FMNIST" <<'PYEOF' || fail "$norm: layer"
import gzip, json, sys
import h5py, numpy as np
norm, src, out, fm = sys.argv[1:5]
with gzip.open(fm + '/train-images-idx3-ubyte.gz') as g:
    x = np.frombuffer(g.read(), np.uint8, offset=16).reshape(-1, 784)[:3000].astype(np.float64)
a, b = h5py.File(src, 'r'), h5py.File(out, 'r')
ca = json.loads(a.attrs['model_config'])['config']['layers']
cb = json.loads(b.attrs['model_config'])['config']['layers']
# Sequential: InputLayer, then Reshape((784,)), Normalization, Reshape((28, 28, 1)), then the rest.
assert [l['class_name'] for l in cb[1:4]] == ['Reshape', 'Normalization', 'Reshape'], cb[:4]
assert cb[:1] + cb[4:] == ca, 'the other layers changed'
nc = cb[2]['config']
assert nc['axis'] == [-1] and nc['mean'] is None and nc['variance'] is None, nc
assert 'invert' not in nc, nc  # tf.keras < 2.12 rejects it; False is the default
assert cb[1]['config']['target_shape'] == [784] and cb[3]['config']['target_shape'] == [28, 28, 1]
g = b['model_weights/normalization']
wn = [(w.decode() if isinstance(w, bytes) else str(w)) for w in g.attrs['weight_names']]
assert wn == ['normalization/mean:0', 'normalization/variance:0', 'normalization/count:0'], wn
mean, var, count = (g[w][()] for w in wn)
assert mean.shape == (784,) and var.shape == (784,) and count.shape == (), (mean.shape, count.shape)
assert count == 3000, count
if norm == 'zscore':
    want_m, want_v = x.mean(0), x.var(0)
else:  # minmax: (x - min) / (max - min)
    want_m, want_v = x.min(0), (x.max(0) - x.min(0)) ** 2
const = want_v == 0  # a constant feature is left unscaled: variance 1
want_v[const] = 1
assert np.allclose(mean, want_m, rtol=1e-5, atol=1e-4), abs(mean - want_m).max()
assert np.allclose(var, want_v, rtol=1e-4, atol=1e-4), abs(var - want_v).max()
# Every weight of the source is there, same shape, in the same layer group.
names = []
a['model_weights'].visit(names.append)
for n in names:
    if isinstance(a['model_weights'][n], h5py.Dataset):
        assert b['model_weights'][n].shape == a['model_weights'][n].shape, n
lb = [(n.decode() if isinstance(n, bytes) else str(n)) for n in b['model_weights'].attrs['layer_names']]
assert lb[:3] == ['reshape', 'normalization', 'reshape_1'], lb
assert b.attrs['training_config'] == a.attrs['training_config']
print(norm, 'layer ok: %d constant features' % const.sum())
PYEOF
done

# Without a normalizer the trained file keeps the source's exact structure.
run_expect 0 "$DDTS" train --model "$WORK/mlp.h5" --data keras --keras-dataset fashion_mnist \
    --samples 600 --epochs 1 --normalizer none --seed 5 --threads 2 --out "$WORK/none"
$PY - "$WORK/mlp.h5" "$WORK/none/model.h5" <<'PYEOF' || fail "none: layout changed"
import sys, h5py
a, b = h5py.File(sys.argv[1], 'r'), h5py.File(sys.argv[2], 'r')
na, nb = [], []
a.visit(na.append); b.visit(nb.append)
assert na == nb, (na, nb)
assert a.attrs['model_config'] == b.attrs['model_config']
print('none: same layout')
PYEOF
finish
