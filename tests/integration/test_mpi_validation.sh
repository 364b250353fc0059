#!/bin/bash
# ddts train --distributed mpi: each rank validates its own slice of the
# validation samples and the figures are combined over the ranks
# (docs/mpi.md). --sync step on 2 and 4 ranks: history.csv's val_loss and
# val_accuracy of every epoch equal one process at the combined batch
# validating on all the held-out samples (tests/tools/mpi_step_ref.c;
# --sync epoch: the averaged model validating on all of them), and
# stdout lists how many samples each rank validated; fewer validation
# samples than ranks (a rank with none); --data client, where each rank
# holds back its own files' last samples: the figures are those of the
# union, checked with `ddts evaluate` on the trained model.
set -u
. "$DDTS_SOURCE_DIR/tests/integration/mpi_lib.sh"

mk_data "$WORK/data" 192 1
mk_model "$WORK/small.h5"
COMMON=(--model "$WORK/small.h5" --data server --dataset "$WORK/data" --epochs 2 --batch-size 8
    --threads 1 --seed 7 --normalizer zscore --learning-rate 0.05
    --loss sparse_categorical_crossentropy)

# check_val N OPTIMIZER SPLIT COUNTS [SYNC]: N ranks with --validation-split
# SPLIT; COUNTS: the validation samples each rank must report, in rank order.
check_val() {
    local n=$1 opt=$2 split=$3 counts=$4 sync=${5:-step} out="$WORK/out-$1-$2-$3-${5:-step}"
    run_expect 0 "${MPIRUN[@]}" -np "$n" "$DDTS" train --distributed mpi "${COMMON[@]}" \
        --sync "$sync" --optimizer "$opt" --validation-split "$split" --out "$out"
    cp "$OUT" "$out.stdout"
    if grep -qx "validation_samples_per_rank: $counts" "$OUT"; then
        N_PASS=$((N_PASS + 1))
    else
        fail "$n ranks, split $split: $(grep validation_samples "$OUT"), expected $counts"
    fi
    "$REF" "$sync" "$WORK/small.h5" "$WORK/data/X/x.npy" "$WORK/data/Y/y.npy" "$n" 8 7 2 "$opt" \
        0.05 zscore "$out/checkpoint.bin" "$split" >"$WORK/ref.out" 2>&1 ||
        fail "$n ranks, split $split: weights: $(cat "$WORK/ref.out")"
    cat "$WORK/ref.out"
    if $PY - "$WORK/ref.out" "$out/history.csv" <<'PYEOF'; then N_PASS=$((N_PASS + 1)); else fail "$n ranks, split $split: history.csv validation figures"; fi
import csv, sys
text = open(sys.argv[1]).read()
rows = list(csv.DictReader(open(sys.argv[2])))
for col in ("val_loss", "val_accuracy"):
    ref = [float(v) for v in text.split("reference %s per epoch:" % col)[1].split("\n")[0].split()]
    got = [float(r[col]) for r in rows]
    assert len(ref) == len(got) == 2, (ref, got)
    for a, b in zip(got, ref):
        assert abs(a - b) <= 1e-5 * max(1.0, abs(b)), "%s %r, one process %r" % (col, got, ref)
    print("history.csv %s %s = one process %s" % (col, got, ref))
PYEOF
}

# 192 samples, 25 % held out: 48, in slices of 24 and of 12.
check_val 2 adam 0.25 "24 24"
check_val 4 adam 0.25 "12 12 12 12"
# 3 held-out samples on 4 ranks: the last rank validates none.
check_val 4 sgd 0.015 "1 1 1 0"
# --sync epoch: the weights are averaged at the end of every epoch, before
# the validation pass: the figures are the averaged model's (the reference's
# mean of 2 models) over all 48 samples, not a rank's own model's.
check_val 2 adam 0.25 "24 24" epoch
# The figures are of the one model every rank holds: rank 0's stdout says them.
$PY - "$WORK/out-2-adam-0.25-step" <<'PYEOF' || fail "stdout val_loss is not history.csv's"
import csv, re, sys
last = list(csv.DictReader(open(sys.argv[1] + "/history.csv")))[-1]
shown = re.search(r"^val_loss: (\S+)$", open(sys.argv[1] + ".stdout").read(), re.M).group(1)
assert shown == "%.6f" % float(last["val_loss"]), (shown, last["val_loss"])
PYEOF

# --data client: rank 0 reads 100 samples, rank 1 80; each holds back its
# last 25 % (25 and 20) and all train on the smallest share (60). The last
# epoch's figures are the trained model's over the 45 held-out samples.
mk_data "$WORK/a" 100 2
mk_data "$WORK/b" 80 3
CL=(train --distributed mpi --model "$WORK/small.h5" --data client --epochs 2 --batch-size 8
    --threads 1 --seed 7 --learning-rate 0.05 --loss sparse_categorical_crossentropy --sync step
    --optimizer adam --validation-split 0.25 --out "$WORK/client")
run_expect 0 "${MPIRUN[@]}" -np 1 "$DDTS" "${CL[@]}" --dataset "$WORK/a" : \
    -np 1 "$DDTS" "${CL[@]}" --dataset "$WORK/b"
grep -q "^samples: 120$" "$OUT" || fail "--data client: $(grep samples "$OUT")"
grep -qx "validation_samples_per_rank: 25 20" "$OUT" ||
    fail "--data client: $(grep validation_samples "$OUT"), expected 25 20"
$PY - "$WORK" <<'PYEOF' || fail "--data client: held-out union"
import os, sys
import numpy as np
w = sys.argv[1]
os.makedirs(w + "/val/X", exist_ok=True)
os.makedirs(w + "/val/Y", exist_ok=True)
x = np.concatenate([np.load(w + "/a/X/x.npy")[75:], np.load(w + "/b/X/x.npy")[60:]])
y = np.concatenate([np.load(w + "/a/Y/y.npy")[75:], np.load(w + "/b/Y/y.npy")[60:]])
np.save(w + "/val/X/x.npy", x)
np.save(w + "/val/Y/y.npy", y)
PYEOF
run_expect 0 "$DDTS" evaluate --model "$WORK/client/model.h5" --dataset "$WORK/val" --batch-size 45
cat "$OUT"
if $PY - "$OUT" "$WORK/client/history.csv" <<'PYEOF'; then N_PASS=$((N_PASS + 1)); else fail "--data client: validation figures are not the union's"; fi
import csv, re, sys
ev = dict(re.findall(r"^(\w+): ([-0-9.e+]+)$", open(sys.argv[1]).read(), re.M))
last = list(csv.DictReader(open(sys.argv[2])))[-1]
for k in ("loss", "accuracy"):
    a, b = float(last["val_" + k]), float(ev[k])
    assert abs(a - b) <= 1e-5 * max(1.0, abs(b)), ("val_" + k, a, b)
    print("--data client: val_%s %r = ddts evaluate on the 45 held-out samples %r" % (k, a, b))
PYEOF
finish
