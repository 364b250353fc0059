#!/bin/bash
# ddts train --distributed mpi under mpirun: --sync step on 2 and 4 ranks at
# batch b equals one process at batch N*b (tests/tools/mpi_step_ref.c
# rebuilds the global batches), weights and the training loss history.csv
# shows; --sync epoch equals the mean of N models trained on the shares; and
# one rank without mpirun equals `ddts train`; --bucket-mb (buckets
# overlapped with the backward pass) equals the fused exchange.
set -u
. "$DDTS_SOURCE_DIR/tests/integration/mpi_lib.sh"

mk_data "$WORK/data" 192 1
mk_model "$WORK/small.h5"
COMMON=(--model "$WORK/small.h5" --data server --dataset "$WORK/data" --epochs 2 --batch-size 8
    --threads 1 --seed 7 --normalizer zscore --validation-split 0 --learning-rate 0.05
    --loss sparse_categorical_crossentropy)

# check_sync N SYNC OPTIMIZER [TAG FLAGS...]: run on N ranks (with FLAGS, in
# out-N-SYNC-OPTIMIZER-TAG), compare with the reference.
check_sync() {
    local n=$1 sync=$2 opt=$3 out="$WORK/out-$1-$2-$3${4:+-$4}"
    shift 3
    [ $# -gt 0 ] && shift
    run_expect 0 "${MPIRUN[@]}" -np "$n" "$DDTS" train --distributed mpi "${COMMON[@]}" \
        --sync "$sync" --optimizer "$opt" --out "$out" "$@"
    cp "$OUT" "$out.stdout"
    grep -q "^ranks: $n$" "$OUT" || fail "$n ranks, $sync: no 'ranks: $n' in $(cat "$OUT")"
    # Each rank's wall, CPU and exchange seconds, gathered (one value per rank).
    for k in seconds cpu_seconds exchange_seconds; do
        grep -Eq "^${k}_per_rank:( [0-9]+\.[0-9]{3}){$n}$" "$OUT" ||
            fail "$n ranks: $(grep "^${k}_per_rank" "$OUT"), expected $n values"
    done
    [ "$(json_get "$out/summary.json" ranks)" = "$n" ] || fail "summary.json: ranks != $n"
    [ "$(json_get "$out/summary.json" sync)" = "$sync" ] || fail "summary.json: sync != $sync"
    for f in model.h5 best_model.h5 history.csv history.png train.log checkpoint.bin; do
        [ -s "$out/$f" ] || fail "$n ranks, $sync: $f missing"
    done
    "$REF" "$sync" "$WORK/small.h5" "$WORK/data/X/x.npy" "$WORK/data/Y/y.npy" "$n" 8 7 2 "$opt" \
        0.05 zscore "$out/checkpoint.bin" >"$WORK/ref.out" 2>&1
    local rc=$?
    cat "$WORK/ref.out"
    if [ "$rc" = 0 ]; then N_PASS=$((N_PASS + 1)); else fail "$n ranks, --sync $sync, $opt: $(cat "$WORK/ref.out")"; fi
    # history.csv's training loss is over every rank's samples: the reference's.
    if $PY - "$WORK/ref.out" "$out/history.csv" <<'PYEOF'; then N_PASS=$((N_PASS + 1)); else fail "$n ranks, $sync, $opt: history.csv loss"; fi
import csv, sys
ref = [float(v) for v in open(sys.argv[1]).read().split("per epoch:")[1].split("\n")[0].split()]
got = [float(r["loss"]) for r in csv.DictReader(open(sys.argv[2]))]
assert len(ref) == len(got), (ref, got)
for a, b in zip(got, ref):
    assert abs(a - b) <= 1e-5 * max(1.0, abs(b)), "history.csv loss %r, reference %r" % (got, ref)
print("history.csv loss %s = reference %s" % (got, ref))
PYEOF
}

check_sync 2 step sgd
check_sync 2 step adam
check_sync 4 step adam
check_sync 2 epoch adam

# The gradient exchange moved n_params floats per step: 24 steps of 259 floats on 2 ranks.
S="$WORK/out-2-step-sgd.stdout"
grep -q "^exchanges: 24$" "$S" || fail "exchanges: $(grep exchanges "$S")"
grep -q "^exchange_bytes_per_rank: $((24 * 259 * 4))$" "$S" || fail "bytes: $(grep bytes "$S")"
grep -q "^exchange_buckets: 0$" "$S" || fail "fused: $(grep buckets "$S")"

# --bucket-mb: the gradients in buckets, each an MPI_Iallreduce started as the
# backward pass finishes a layer. 0.0001 MiB (26 floats) makes each of the two
# Dense layers a bucket: the output layer's 51 gradients
# while the hidden layer's 208 are computed, then those; 48 buckets in 24
# steps, the same bytes. On 2 ranks every sum is a0 + a1 in any order, so the
# weights, optimizer state and history are the fused run's bit for bit; on 4
# ranks OpenMPI may sum in another order (docs/mpi.md): the reference check.
check_sync 2 step adam bucket --bucket-mb 0.0001
check_sync 4 step adam bucket --bucket-mb 0.0001
B="$WORK/out-2-step-adam-bucket"
grep -q "^exchanges: 24$" "$B.stdout" || fail "buckets: $(grep exchanges "$B.stdout")"
grep -q "^exchange_bytes_per_rank: $((24 * 259 * 4))$" "$B.stdout" ||
    fail "buckets: $(grep bytes "$B.stdout")"
if grep -q "^exchange_buckets: 48$" "$B.stdout"; then N_PASS=$((N_PASS + 1)); else
    fail "buckets: $(grep buckets "$B.stdout"), expected 48"; fi
for f in checkpoint.bin history.csv; do
    if cmp "$WORK/out-2-step-adam/$f" "$B/$f"; then
        N_PASS=$((N_PASS + 1))
        echo "2 ranks: $f of the bucketed run is the fused run's, bit for bit"
    else
        fail "2 ranks: $f of the bucketed run differs from the fused run's"
    fi
done
$PY - "$WORK/out-4-step-adam/checkpoint.bin" "$WORK/out-4-step-adam-bucket/checkpoint.bin" <<'PYEOF'
import sys
a, b = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
print("4 ranks: the bucketed checkpoint is %s the fused one (%d bytes)"
      % ("bit-identical to" if a == b else "not bit-identical to", len(a)))
PYEOF

# One rank, no mpirun (a singleton): the same run as ddts train.
SOLO=(--model "$WORK/small.h5" --data server --dataset "$WORK/data" --epochs 2 --batch-size 8
    --threads 1 --seed 7 --normalizer zscore --validation-split 0.25 --optimizer adam)
run_expect 0 "$DDTS" train "${SOLO[@]}" --out "$WORK/plain"
run_expect 0 "$DDTS" train --distributed mpi "${SOLO[@]}" --out "$WORK/single"
if cmp -s "$WORK/plain/history.csv" "$WORK/single/history.csv"; then
    N_PASS=$((N_PASS + 1))
else
    fail "1 rank differs from ddts train: $(cat "$WORK/plain/history.csv" "$WORK/single/history.csv")"
fi
$PY - "$WORK/plain/model.h5" "$WORK/single/model.h5" <<'PYEOF' || fail "1 rank: model.h5 differs from ddts train"
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
names = []
a["model_weights"].visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
assert names, "no weights"
for n in names:
    assert np.array_equal(a["model_weights"][n][()], b["model_weights"][n][()]), n
print("1 rank: %d weight arrays bit-identical to ddts train" % len(names))
PYEOF
finish
