#!/bin/bash
# A packet capture of a whole job on loopback (dumpcap from Debian's tshark)
# holds neither the passphrase nor any plaintext of the model, the settings or
# the data: every byte after the handshake is encrypted.
set -u
. "$DDTS_SOURCE_DIR/tests/integration/lib.sh"
PY=/usr/bin/python3
if ! command -v dumpcap >/dev/null; then
    echo "SKIPPED: dumpcap (Debian package tshark) is not installed"
    exit 0
fi
printf 'a very secret passphrase 1234\n' >"$WORK/pass"
chmod 600 "$WORK/pass"
run_expect 0 "$DDTS" model new "$DDTS_SOURCE_DIR/examples/fashion_mlp.json" -o "$WORK/mlp.h5"
PORT=$(free_port)
dumpcap -q -i lo -f "tcp port $PORT" -w "$WORK/job.pcapng" >"$WORK/dumpcap.err" 2>&1 &
CAP=$!
PIDS+=("$CAP")
for _ in $(seq 1 100); do
    grep -q 'Capturing' "$WORK/dumpcap.err" 2>/dev/null && break
    [ -s "$WORK/job.pcapng" ] && break
    sleep 0.1
done
sleep 1
if ! kill -0 "$CAP" 2>/dev/null; then
    echo "SKIPPED: cannot capture on lo here: $(cat "$WORK/dumpcap.err")"
    exit 0
fi
"$DDTS" server --host 127.0.0.1 --port "$PORT" --passphrase-file "$WORK/pass" \
    --model "$WORK/mlp.h5" --clients 1 --epochs 1 --data keras --keras-dataset fashion_mnist \
    --samples 2000 --sync epoch --seed 3 --threads 1 --workdir "$WORK/server" --name cap \
    >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER=$!
wait_server "$SERVER" "$WORK/server.err"
run_expect 0 timeout 300 "$DDTS" client --server "127.0.0.1:$PORT" --passphrase-file "$WORK/pass" \
    --workdir "$WORK/client" --threads 1
wait "$SERVER" || fail "server failed: $(tail -5 "$WORK/server.err")"
sleep 1
kill -INT "$CAP"
wait "$CAP"
[ -s "$WORK/job.pcapng" ] || fail "nothing captured"
SHARD=$(ls "$WORK"/server/cap/shards/shard_0/x.npy)
$PY - "$WORK/job.pcapng" "$WORK/mlp.h5" "$SHARD" <<'PYEOF' || fail "plaintext found in the capture"
import sys
cap = open(sys.argv[1], 'rb').read()
model = open(sys.argv[2], 'rb').read()
data = open(sys.argv[3], 'rb').read()
print('capture', len(cap), 'bytes')
assert len(cap) > len(data) // 2, 'the capture is too small to hold the job'
needles = {
    'passphrase': b'a very secret passphrase',
    'model HDF5 signature': b'\x89HDF\r\n\x1a\n',
    'model config': b'kernel_initializer',
    'npy magic': b'\x93NUMPY',
    'settings': b'keras-dataset',
}
# Stretches of the model's and the data's own bytes (skipping constant runs).
for name, blob in (('model', model), ('data', data)):
    found = 0
    for off in range(1024, len(blob) - 64, max(1, len(blob) // 40)):
        piece = blob[off:off + 32]
        if len(set(piece)) > 8:
            needles['%s bytes at %d' % (name, off)] = piece
            found += 1
    assert found >= 5, name
for name, n in needles.items():
    assert n not in cap, 'found ' + name
print('checked', len(needles), 'plaintexts: none in the capture')
PYEOF
finish
