#!/bin/bash
# ddts ensemble (issue 7): two models trained briefly from the example MLP
# (different seeds) become one functional model that averages their outputs
# (InputLayer, the members nested as member_1/member_2 at node index 1, an
# Average layer): its `ddts predict` is the mean of the members' (numpy), it
# evaluates and inspects; --average-weights gives the mean weights (h5py).
set -u
. "$DDTS_SOURCE_DIR/tests/integration/lib.sh"
PY=/usr/bin/python3

for s in 1 2; do
    run_expect 0 "$DDTS" model new "$DDTS_SOURCE_DIR/examples/fashion_mlp.json" \
        -o "$WORK/m$s.h5" --seed $s
    run_expect 0 "$DDTS" train --model "$WORK/m$s.h5" --data keras --keras-dataset fashion_mnist \
        --samples 1000 --epochs 1 --seed $s --threads 2 --out "$WORK/t$s"
done
M1="$WORK/t1/model.h5"
M2="$WORK/t2/model.h5"

run_expect 0 "$DDTS" ensemble -o "$WORK/ens.h5" "$M1" "$M2"
run_expect 0 "$DDTS" inspect "$WORK/ens.h5"
cat "$OUT"
for l in "member_1 (Sequential)" "member_2 (Sequential)" "average (Average)" "input (InputLayer)"; do
    grep -q "$l" "$OUT" || fail "inspect: no '$l'"
done
run_expect 0 "$DDTS" evaluate --model "$WORK/ens.h5" --keras-dataset fashion_mnist --threads 2
grep -q '^accuracy: 0\.[0-9]' "$OUT" || fail "evaluate: no accuracy: $(cat "$OUT")"
for m in "$M1" "$M2" "$WORK/ens.h5"; do
    run_expect 0 "$DDTS" predict --model "$m" --keras-dataset fashion_mnist --threads 2 \
        -o "$m.npy"
done
$PY - "$M1" "$M2" "$WORK/ens.h5" <<'PYEOF' || fail "ensemble outputs/layout"
import json, sys
import h5py, numpy as np
m1, m2, ens = sys.argv[1:4]
a, b, e = (np.load(p + '.npy') for p in (m1, m2, ens))
assert e.shape == a.shape == (10000, 10), e.shape
assert abs(a - b).max() > 1e-2, 'members are the same model'
d = abs((a + b) / 2 - e).max()
assert d <= 1e-5, d
f = h5py.File(ens, 'r')
cfg = json.loads(f.attrs['model_config'])
assert cfg['class_name'] == 'Functional', cfg['class_name']
layers = cfg['config']['layers']
assert [(l['class_name'], l['name']) for l in layers] == [
    ('InputLayer', 'input'), ('Sequential', 'member_1'), ('Sequential', 'member_2'),
    ('Average', 'average')], layers
assert layers[1]['inbound_nodes'] == [[['input', 0, 0, {}]]], layers[1]['inbound_nodes']
assert layers[3]['inbound_nodes'] == [[['member_1', 1, 0, {}], ['member_2', 1, 0, {}]]]
assert cfg['config']['input_layers'] == [['input', 0, 0]]
assert cfg['config']['output_layers'] == [['average', 0, 0]]
# Each member's layers are its own file's, renamed.
for i, src in ((1, m1), (2, m2)):
    mc = json.loads(h5py.File(src, 'r').attrs['model_config'])['config']
    nested = layers[i]['config']
    assert nested['name'] == 'member_%d' % i
    assert nested['layers'] == mc['layers']
g = f['model_weights']
assert [(n.decode() if isinstance(n, bytes) else str(n)) for n in g.attrs['layer_names']] == ['input', 'member_1', 'member_2', 'average']
for i, src in ((1, m1), (2, m2)):
    s = h5py.File(src, 'r')['model_weights']
    names = [(w.decode() if isinstance(w, bytes) else str(w)) for w in g['member_%d' % i].attrs['weight_names']]
    assert names == ['dense/kernel:0', 'dense/bias:0', 'dense_1/kernel:0', 'dense_1/bias:0',
                     'dense_2/kernel:0', 'dense_2/bias:0'], names
    for w in names:
        got = g['member_%d' % i][w][()]
        want = s[w.split('/')[0]][w][()]
        assert got.dtype == np.float32 and np.array_equal(got, want), w
assert len(g['input'].attrs['weight_names']) == 0 and len(g['average'].attrs['weight_names']) == 0
assert f.attrs['training_config'] == h5py.File(m1, 'r').attrs['training_config']
print('ensemble ok: max |mean - ensemble| = %g' % d)
PYEOF

# --average-weights: M1's layout, every weight the mean of the members'.
run_expect 0 "$DDTS" ensemble --average-weights -o "$WORK/avg.h5" "$M1" "$M2"
$PY - "$M1" "$M2" "$WORK/avg.h5" <<'PYEOF' || fail "--average-weights"
import sys
import h5py, numpy as np
a, b, c = (h5py.File(p, 'r') for p in sys.argv[1:4])
names = []
a.visit(names.append)
nc = []
c.visit(nc.append)
assert names == nc, (names, nc)
assert a.attrs['model_config'] == c.attrs['model_config']
n = 0
for k in names:
    if isinstance(a[k], h5py.Dataset) and k.startswith('model_weights/'):
        want = (a[k][()].astype(np.float64) + b[k][()]) / 2
        assert np.allclose(c[k][()], want, rtol=0, atol=1e-6), k
        n += 1
assert n == 6, n
print('average-weights ok:', n, 'weights')
PYEOF

# Errors: one member, an output of another shape, a .keras output name.
run_expect 2 "$DDTS" ensemble -o "$WORK/x.h5" "$M1"
run_expect 2 "$DDTS" ensemble -o "$WORK/x.keras" "$M1" "$M2"
$PY - "$DDTS_SOURCE_DIR/examples/fashion_mlp.json" "$WORK/five.json" <<'PYEOF'
import json, sys
c = json.load(open(sys.argv[1]))
c['config']['layers'][-1]['config']['units'] = 5
json.dump(c, open(sys.argv[2], 'w'))
PYEOF
run_expect 0 "$DDTS" model new "$WORK/five.json" -o "$WORK/five.h5"
run_expect 1 "$DDTS" ensemble -o "$WORK/x.h5" "$M1" "$WORK/five.h5"
grep -q "output shape differs" "$ERR" || fail "no shape error: $(cat "$ERR")"
[ -e "$WORK/x.h5" ] && fail "an ensemble was written despite the error"
finish
