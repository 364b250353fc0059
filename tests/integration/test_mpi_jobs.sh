#!/bin/bash
# ddts train --distributed mpi under mpirun: usage errors, a failing rank 0,
# --sync steps:K and none, k-fold, --data client. (Resume and a killed rank:
# test_mpi_resume.sh.)
set -u
. "$DDTS_SOURCE_DIR/tests/integration/mpi_lib.sh"

mk_data "$WORK/data" 192 1
mk_model "$WORK/small.h5"
COMMON=(--model "$WORK/small.h5" --data server --dataset "$WORK/data" --batch-size 8
    --threads 1 --seed 7 --normalizer zscore --validation-split 0 --optimizer adam
    --learning-rate 0.01 --loss sparse_categorical_crossentropy)

# Usage errors name the flag; a bad path on rank 0 ends every rank with its message.
run_expect 2 "$DDTS" train --distributed tcp "${COMMON[@]}"
grep -q "distributed" "$ERR" || fail "--distributed tcp: $(cat "$ERR")"
run_expect 2 "$DDTS" train --resume "${COMMON[@]}"
grep -q "resume" "$ERR" || fail "--resume alone: $(cat "$ERR")"
run_expect 2 "$DDTS" train --bucket-mb 1 "${COMMON[@]}"
grep -q "bucket-mb needs --distributed mpi" "$ERR" || fail "--bucket-mb alone: $(cat "$ERR")"
for v in -1 abc 2000 nan; do
    run_expect 2 "$DDTS" train --distributed mpi --bucket-mb "$v" "${COMMON[@]}"
    grep -q "bucket-mb: '$v' is not a number" "$ERR" || fail "--bucket-mb $v: $(cat "$ERR")"
done
run_expect 2 "${MPIRUN[@]}" -np 2 "$DDTS" train --distributed mpi "${COMMON[@]}" --sync epoch \
    --bucket-mb 1 --out "$WORK/bad"
grep -q "bucket-mb applies to --sync step" "$ERR" || fail "--bucket-mb, epoch: $(cat "$ERR")"
run_expect 1 "${MPIRUN[@]}" -np 2 "$DDTS" train --distributed mpi "${COMMON[@]}" \
    --dataset "$WORK/missing" --out "$WORK/bad"
grep -q "missing" "$ERR" || fail "a missing dataset is not named: $(cat "$ERR")"

# steps:5 with 12 batches per epoch: exchanges after batches 5 and 10 and at the epoch end.
run_expect 0 "${MPIRUN[@]}" -np 2 "$DDTS" train --distributed mpi "${COMMON[@]}" --epochs 2 \
    --sync steps:5 --out "$WORK/steps"
grep -q "^exchanges: 6$" "$OUT" || fail "steps:5: $(grep exchanges "$OUT")"
grep -q "^exchange_bytes_per_rank: $((6 * 260 * 8))$" "$OUT" || fail "steps:5: $(grep bytes "$OUT")"

# none: no exchange, rank 0 writes every rank's model; the models differ.
run_expect 0 "${MPIRUN[@]}" -np 2 "$DDTS" train --distributed mpi "${COMMON[@]}" --epochs 2 \
    --sync none --normalizer none --out "$WORK/none"
grep -q "^exchanges: 0$" "$OUT" || fail "none: $(grep exchanges "$OUT")"
[ -s "$WORK/none/rank_1/model.h5" ] || fail "none: rank_1/model.h5 missing"
$PY - "$WORK/none/model.h5" "$WORK/none/rank_1/model.h5" <<'PYEOF' || fail "none: models"
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
k = "model_weights/dense/dense/kernel:0"
assert a[k].shape == b[k].shape == (12, 16)
assert not np.array_equal(a[k][()], b[k][()]), "rank 0 and rank 1 trained the same model"
print("none: rank 0 and rank 1 models differ (max diff %.3g)" % np.abs(a[k][()] - b[k][()]).max())
PYEOF

# k-fold with --sync step: one folder per fold, the fold figures in summary.json.
run_expect 0 "${MPIRUN[@]}" -np 2 "$DDTS" train --distributed mpi "${COMMON[@]}" --epochs 1 \
    --sync step --method kfold --folds 3 --out "$WORK/kfold"
for f in 1 2 3; do [ -s "$WORK/kfold/fold_$f/history.csv" ] || fail "kfold: fold_$f"; done
[ "$(json_get "$WORK/kfold/summary.json" folds)" = 3 ] || fail "kfold: summary.json"

# --data client: each rank reads its own --dataset (here the same folder);
# each rank holds back 25 % of its own to validate, all trim to the smallest (144).
run_expect 0 "${MPIRUN[@]}" -np 2 "$DDTS" train --distributed mpi "${COMMON[@]}" --epochs 1 \
    --sync epoch --data client --validation-split 0.25 --out "$WORK/client"
grep -q "^samples: 288$" "$OUT" || fail "--data client: $(grep samples "$OUT")"
grep -q "val_loss" "$WORK/client/history.csv" || fail "--data client: no validation"

finish
