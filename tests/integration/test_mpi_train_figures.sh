#!/bin/bash
# ddts train --distributed mpi: the training figures of every epoch (loss,
# accuracy) are over every rank's samples. Each rank hands its epoch's
# running totals to the engine's on_training_sums hook, where they are
# replaced by their sums over the ranks before the figures are computed
# (ddts_mpi_merge_sums, docs/mpi.md), so the history, train.log,
# summary.json and the best model chosen by --monitor loss or accuracy all
# rest on the same figures, alike on every rank. --sync step on 2 and 4
# ranks: history.csv's loss and accuracy equal one process at the combined
# batch (tests/tools/mpi_step_ref.c), and the checkpoint's best model is
# the best epoch of those figures, its value that epoch's figure and its
# weights the one process's after that epoch; --sync epoch: the figures are
# the ranks' mean and the best model is an averaged one. (Before, the best
# model was chosen on rank 0's own training figures.)
set -u
. "$DDTS_SOURCE_DIR/tests/integration/mpi_lib.sh"

mk_data "$WORK/data" 192 1
mk_model "$WORK/small.h5"
EP=6
COMMON=(--model "$WORK/small.h5" --data server --dataset "$WORK/data" --epochs $EP
    --batch-size 8 --threads 1 --seed 7 --normalizer zscore --validation-split 0
    --loss sparse_categorical_crossentropy)

# check_figures N SYNC OPTIMIZER LEARNING_RATE MONITOR
check_figures() {
    local n=$1 sync=$2 opt=$3 lr=$4 mon=$5 out="$WORK/out-$1-$2-$3-$4-$5"
    run_expect 0 "${MPIRUN[@]}" -np "$n" "$DDTS" train --distributed mpi "${COMMON[@]}" \
        --sync "$sync" --optimizer "$opt" --learning-rate "$lr" --monitor "$mon" --out "$out"
    cp "$OUT" "$out.stdout"
    "$REF" "$sync" "$WORK/small.h5" "$WORK/data/X/x.npy" "$WORK/data/Y/y.npy" "$n" 8 7 $EP \
        "$opt" "$lr" zscore "$out/checkpoint.bin" >"$WORK/ref.out" 2>&1
    local rc=$?
    cat "$WORK/ref.out"
    # The final and the best weights against the reference's.
    if [ "$rc" = 0 ]; then N_PASS=$((N_PASS + 1)); else fail "$n ranks, $sync, $opt $lr, --monitor $mon: weights: $(cat "$WORK/ref.out")"; fi
    if $PY - "$WORK/ref.out" "$out" "$mon" <<'PYEOF'; then N_PASS=$((N_PASS + 1)); else fail "$n ranks, $sync, $opt $lr, --monitor $mon: training figures"; fi
import csv, json, re, sys
text, out, mon = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3]
def close(a, b):
    return abs(a - b) <= 1e-5 * max(1.0, abs(b))
rows = list(csv.DictReader(open(out + "/history.csv")))
ref = {}
for col in ("loss", "accuracy"):
    ref[col] = [float(v) for v in
                text.split("reference training %s per epoch:" % col)[1].split("\n")[0].split()]
    got = [float(r[col]) for r in rows]
    assert len(ref[col]) == len(got) == 6, (col, ref[col], got)
    for a, b in zip(got, ref[col]):
        assert close(a, b), "history.csv %s %r, one process %r" % (col, got, ref[col])
    print("history.csv %s = reference %s" % (col, ref[col]))
# The best model: chosen on the combined figures (the reference's best, to rounding).
m = re.search(r"^checkpoint best: (\S+) epoch (\d+) value (\S+)$", text, re.M)
assert m, "no best model in the checkpoint"
name, epoch, value = m.group(1), int(m.group(2)), float(m.group(3))
assert name == mon, (name, mon)
best = (max if mon == "accuracy" else min)(ref[mon])
assert close(value, ref[mon][epoch - 1]), \
    "best model of epoch %d: value %r, that epoch's %s over every rank %r" % (
        epoch, value, mon, ref[mon][epoch - 1])
assert close(value, best), "best model: %s %r, the best epoch's %r (%r)" % (mon, value, best, ref[mon])
log = open(out + "/train.log").read()
assert "best model: epoch %d by %s" % (epoch, mon) in log, re.findall(r"best model: .*", log)
print("best model: epoch %d by %s, %r = the best of %r" % (epoch, mon, value, ref[mon]))
# stdout and summary.json report the last epoch's combined figures.
last = rows[-1]
std = dict(re.findall(r"^(\w+): (\S+)$", open(out + ".stdout").read(), re.M))
summ = json.load(open(out + "/summary.json"))
for k in ("loss", "accuracy"):
    assert std[k] == "%.6f" % float(last[k]), (k, std[k], last[k])
    assert close(summ[k], float(last[k])), (k, summ[k], last[k])
PYEOF
}

# SGD at 0.5: the loss over both ranks is lowest in epoch 6 (0.179 against
# 0.186 in epoch 5); rank 0's own is lowest in epoch 5, which the old code chose.
check_figures 2 step sgd 0.5 loss
# SGD at 1.0: the accuracy over both ranks peaks in epoch 5 of 6, so the
# best weights are not the last ones.
check_figures 2 step sgd 1.0 accuracy
check_figures 4 step adam 0.05 accuracy
check_figures 4 step sgd 0.05 loss
# --sync epoch: the ranks' models are averaged after every epoch; the
# figures are their mean (the reference's), the best model an averaged one.
check_figures 2 epoch adam 0.05 loss
finish
