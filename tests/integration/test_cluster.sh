#!/bin/bash
# A real server and two real clients on 127.0.0.1: a Fashion-MNIST job with
# --sync epoch runs end to end, results and the global model are collected,
# and a client with a wrong passphrase is refused.
set -u
. "$DDTS_SOURCE_DIR/tests/integration/lib.sh"
PY=/usr/bin/python3

printf 'correct horse battery staple\n' >"$WORK/pass"
printf 'wrong passphrase\n' >"$WORK/bad"
chmod 600 "$WORK/pass" "$WORK/bad"
run_expect 0 "$DDTS" model new "$DDTS_SOURCE_DIR/examples/fashion_mlp.json" -o "$WORK/mlp.h5"
PORT=$(free_port)

"$DDTS" server --host 127.0.0.1 --port "$PORT" --passphrase-file "$WORK/pass" \
    --model "$WORK/mlp.h5" --clients 2 --epochs 2 --batch-size 32 --data keras \
    --keras-dataset fashion_mnist --samples 12000 --normalizer simple --sync epoch \
    --seed 5 --threads 1 --workdir "$WORK/server" --name job1 --client-timeout 60 \
    >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER=$!
PIDS+=("$SERVER")
wait_server "$SERVER" "$WORK/server.err"
# A wrong passphrase is refused with a clear error and does not stop the job.
timeout 60 "$DDTS" client --server "127.0.0.1:$PORT" --passphrase-file "$WORK/bad" \
    --workdir "$WORK/bad-client" --retries 0 >"$WORK/bad.out" 2>"$WORK/bad.err"
rc=$?
[ "$rc" = 1 ] || fail "a wrong passphrase: exit $rc, expected 1"
grep -qi 'passphrase\|authentication' "$WORK/bad.err" || fail "wrong passphrase not named: $(cat "$WORK/bad.err")"

for i in 1 2; do
    timeout 600 "$DDTS" client --server "127.0.0.1:$PORT" --passphrase-file "$WORK/pass" \
        --workdir "$WORK/client$i" --name "client-$i" --threads 1 \
        >"$WORK/client$i.out" 2>"$WORK/client$i.err" &
    PIDS+=("$!")
done
for p in "${PIDS[@]:1}"; do
    wait "$p" || fail "client $p failed: $(tail -5 "$WORK"/client*.err)"
done
wait "$SERVER" || fail "server failed: $(tail -20 "$WORK/server.err")"
cat "$WORK/server.out"
JOB="$WORK/server/job1"
for f in global/model.h5 summary.json summary.txt report.png; do
    [ -s "$JOB/$f" ] || fail "server: $f missing"
done
for i in 1 2; do
    for f in model.h5 history.csv train.log history.png; do
        [ -s "$JOB/clients/client-$i/$f" ] || fail "client-$i: $f not collected"
        ls "$WORK"/client$i/job1/share_*/results/$f >/dev/null 2>&1 || fail "client-$i: local $f deleted"
    done
done
acc=$(sed -n 's/^test accuracy: //p' "$WORK/server.out")
echo "global model test accuracy: $acc"
$PY -c "import sys; sys.exit(0 if float('${acc:-0}') >= 0.75 else 1)" || fail "global accuracy $acc < 0.75"
# With --sync epoch both clients end with the same (global) weights.
$PY - "$JOB/clients/client-1/model.h5" "$JOB/clients/client-2/model.h5" "$JOB/global/model.h5" <<'PYEOF' || fail "clients' final weights differ"
import sys, h5py, numpy as np
fs = [h5py.File(p, 'r') for p in sys.argv[1:]]
names = []
fs[0]['model_weights'].visit(names.append)
for n in names:
    d = fs[0]['model_weights'][n]
    if isinstance(d, h5py.Dataset):
        for f in fs[1:]:
            assert np.array_equal(d[()], f['model_weights'][n][()]), n
print('client and global weights identical:', len(names), 'objects')
PYEOF
finish
