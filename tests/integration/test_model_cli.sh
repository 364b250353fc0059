#!/bin/bash
# ddts model new (Keras JSON and compact list), ddts inspect on models, ddts
# evaluate/predict, ensemble --average-weights, and their error messages.
set -u
. "$DDTS_SOURCE_DIR/tests/integration/lib.sh"
PY=/usr/bin/python3

run_expect 0 "$DDTS" model new "$DDTS_SOURCE_DIR/examples/fashion_cnn.json" -o "$WORK/cnn.h5"
run_expect 0 "$DDTS" inspect "$WORK/cnn.h5"
grep -q 'conv2d (Conv2D) *(None, 26, 26, 32) *320' "$OUT" || fail "inspect: conv2d row: $(cat "$OUT")"
grep -q 'Total params: 225034' "$OUT" || fail "inspect: total params"
grep -q 'Loss: sparse_categorical_crossentropy' "$OUT" || fail "inspect: loss"
# The recurrent examples (the bench's recurrent case uses them): Keras' own parameter counts,
# LSTM 4u(in + u + 1) and GRU (reset_after, two biases) 3u(in + u + 2), in 28, u 128, + Dense.
for m in lstm:81674 gru:61962; do
    run_expect 0 "$DDTS" model new "$DDTS_SOURCE_DIR/examples/fashion_${m%%:*}.json" -o "$WORK/${m%%:*}.h5"
    run_expect 0 "$DDTS" inspect "$WORK/${m%%:*}.h5"
    grep -q "Total params: ${m#*:} " "$OUT" || fail "inspect fashion_${m%%:*}: $(cat "$OUT")"
done
grep -q 'gru (GRU) *(None, 128) *60672' "$OUT" || fail "inspect fashion_gru: GRU row: $(cat "$OUT")"
run_expect 0 "$DDTS" model new --layers dense:16:relu,dense:3:softmax --input-shape 4 \
    -o "$WORK/small.h5" --seed 2
run_expect 0 "$DDTS" inspect "$WORK/small.h5"
grep -q 'Total params: 131' "$OUT" || fail "compact model: params $(cat "$OUT")"
# The layer registry: every spec word's class is trained, LSTM too; ConvLSTM is known by name only.
run_expect 0 "$DDTS" inspect --layers
grep -q '^trains    BatchNormalization' "$OUT" || fail "inspect --layers: BN row: $(cat "$OUT")"
grep -q -- '--layers dense:UNITS\[:ACTIVATION\]' "$OUT" || fail "inspect --layers: dense spec"
grep -q '^trains    LSTM (GRU, SimpleRNN)' "$OUT" || fail "inspect --layers: LSTM row"
grep -q '^read-only .*ConvLSTM2D' "$OUT" || fail "inspect --layers: ConvLSTM2D row"
run_expect 2 "$DDTS" model new --layers dense:3 -o "$WORK/x.h5"
run_expect 1 "$DDTS" model new --layers dense:zz --input-shape 4 -o "$WORK/x.h5"
# Loss and metric names go into the file's JSON: anything but a name is refused, naming the flag.
run_expect 1 "$DDTS" model new "$DDTS_SOURCE_DIR/examples/fashion_mlp.json" --loss 'mse"' \
    -o "$WORK/q.h5"
grep -q -- "--loss: 'mse\"' is not a Keras loss name" "$ERR" || fail "quoted --loss: $(cat "$ERR")"
run_expect 1 "$DDTS" model new "$DDTS_SOURCE_DIR/examples/fashion_mlp.json" \
    --metrics 'accuracy,a"b' -o "$WORK/q.h5"
grep -q -- "--metrics: 'a\"b' is not a Keras metric name" "$ERR" || fail "quoted --metrics: $(cat "$ERR")"
[ -e "$WORK/q.h5" ] && fail "a refused model was written"
# --layers takes the same list of metrics, written to training_config as a list (h5py reads it).
run_expect 0 "$DDTS" model new --layers dense:8:relu,dense:3:softmax --input-shape 4 \
    --metrics accuracy,mae -o "$WORK/metrics.h5"
$PY -c 'import h5py, json, sys
m = json.loads(h5py.File(sys.argv[1], "r").attrs["training_config"])["metrics"]
sys.exit(0 if m == ["accuracy", "mae"] else "metrics %r" % (m,))' "$WORK/metrics.h5" ||
    fail "--layers --metrics accuracy,mae not written as a list"
run_expect 1 "$DDTS" model new --layers dense:3 --input-shape 4 --metrics 'accuracy,' \
    -o "$WORK/q2.h5"
grep -q 'bad metric name ""' "$ERR" || fail "empty metric name: $(cat "$ERR")"
# An unsupported layer is an error naming the layer and its class.
sed 's/"MaxPooling2D"/"ConvLSTM2D"/' "$DDTS_SOURCE_DIR/examples/fashion_cnn.json" >"$WORK/bad.json"
run_expect 1 "$DDTS" model new "$WORK/bad.json" -o "$WORK/bad.h5"
grep -q 'max_pooling2d' "$ERR" && grep -q 'ConvLSTM2D' "$ERR" || fail "unsupported layer not named: $(cat "$ERR")"
[ -e "$WORK/bad.h5" ] && fail "a model was written despite the error"

# evaluate and predict on data files; predictions agree with evaluate's accuracy.
$PY - "$WORK" <<'PYEOF'
import numpy as np, sys
rng = np.random.default_rng(0)
x = rng.normal(size=(200, 4)).astype(np.float32)
y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1)
np.save(sys.argv[1] + '/x.npy', x); np.save(sys.argv[1] + '/y.npy', y)
PYEOF
run_expect 0 "$DDTS" evaluate --model "$WORK/small.h5" --x "$WORK/x.npy" --y "$WORK/y.npy"
acc=$(sed -n 's/^accuracy: //p' "$OUT")
run_expect 0 "$DDTS" predict --model "$WORK/small.h5" --x "$WORK/x.npy" -o "$WORK/p.npy"
$PY - "$WORK" "$acc" <<'PYEOF' || fail "predict and evaluate disagree"
import numpy as np, sys
p = np.load(sys.argv[1] + '/p.npy'); y = np.load(sys.argv[1] + '/y.npy')
assert p.shape == (200, 3) and p.dtype == np.float32, (p.shape, p.dtype)
assert np.allclose(p.sum(1), 1, atol=1e-5)
acc = float((p.argmax(1) == y).mean())
print('predict accuracy', acc, 'evaluate', sys.argv[2])
assert abs(acc - float(sys.argv[2])) < 1e-6
PYEOF
run_expect 2 "$DDTS" evaluate --x "$WORK/x.npy"

# ensemble --average-weights: every weight is the mean of the members'.
run_expect 0 "$DDTS" model new --layers dense:16:relu,dense:3:softmax --input-shape 4 \
    -o "$WORK/small2.h5" --seed 3
run_expect 0 "$DDTS" ensemble --average-weights -o "$WORK/avg.h5" "$WORK/small.h5" "$WORK/small2.h5"
$PY - "$WORK" <<'PYEOF' || fail "averaged weights"
import h5py, numpy as np, sys
a, b, m = (h5py.File(sys.argv[1] + f, 'r') for f in ('/small.h5', '/small2.h5', '/avg.h5'))
names = []
a['model_weights'].visit(names.append)
n = 0
for k in names:
    if isinstance(a['model_weights'][k], h5py.Dataset):
        want = (a['model_weights'][k][()] + b['model_weights'][k][()]) / 2
        assert np.allclose(m['model_weights'][k][()], want, atol=1e-7), k
        n += 1
assert n == 4, n
print('averaged', n, 'weights')
PYEOF
run_expect 1 "$DDTS" ensemble --average-weights -o "$WORK/bad.h5" "$WORK/small.h5" "$WORK/cnn.h5"
finish
