#!/bin/bash
# ddts train --distributed mpi under mpirun: --resume is bit-identical to an
# uninterrupted job and goes on with another number of ranks; a rank killed
# with SIGKILL ends the job (fail-stop, no rank left behind) and --resume
# continues from the last checkpoint.
set -u
. "$DDTS_SOURCE_DIR/tests/integration/mpi_lib.sh"

mk_data "$WORK/data" 192 1
mk_model "$WORK/small.h5"
COMMON=(--model "$WORK/small.h5" --data server --dataset "$WORK/data" --batch-size 8
    --threads 1 --seed 7 --normalizer zscore --validation-split 0 --optimizer adam
    --learning-rate 0.01 --loss sparse_categorical_crossentropy)
rows() { tail -n +2 "$1" | wc -l; }

# --resume: 2 epochs, then 1 more, on the same ranks, is the 3-epoch job bit for bit.
run_expect 0 "${MPIRUN[@]}" -np 2 "$DDTS" train --distributed mpi "${COMMON[@]}" --epochs 3 \
    --sync step --out "$WORK/straight"
run_expect 0 "${MPIRUN[@]}" -np 2 "$DDTS" train --distributed mpi "${COMMON[@]}" --epochs 2 \
    --sync step --out "$WORK/resumed"
run_expect 0 "${MPIRUN[@]}" -np 2 "$DDTS" train --distributed mpi "${COMMON[@]}" --epochs 3 \
    --sync step --out "$WORK/resumed" --resume
grep -q "resumed" "$ERR" || fail "--resume: no 'resumed' in the log"
if cmp -s "$WORK/straight/checkpoint.bin" "$WORK/resumed/checkpoint.bin"; then
    N_PASS=$((N_PASS + 1))
    echo "resume: checkpoint after epoch 3 bit-identical to the uninterrupted job"
else
    fail "--resume: the weights differ from the uninterrupted job"
fi
cmp -s "$WORK/straight/history.csv" "$WORK/resumed/history.csv" || fail "--resume: history.csv differs"
# A finished job cannot be resumed without more epochs; another number of ranks can go on.
run_expect 1 "${MPIRUN[@]}" -np 2 "$DDTS" train --distributed mpi "${COMMON[@]}" --epochs 3 \
    --sync step --out "$WORK/resumed" --resume
grep -q "epochs" "$ERR" || fail "resume of a finished job: $(cat "$ERR")"
run_expect 0 "${MPIRUN[@]}" -np 4 "$DDTS" train --distributed mpi "${COMMON[@]}" --epochs 4 \
    --sync step --out "$WORK/resumed" --resume
[ "$(rows "$WORK/resumed/history.csv")" = 4 ] || fail "resume on 4 ranks: $(cat "$WORK/resumed/history.csv")"

# A rank killed with SIGKILL: mpirun ends the job (fail-stop) with an error;
# --resume continues from the checkpoint of the last whole epoch.
KILLED="$WORK/killed"
"${MPIRUN[@]}" -np 2 "$DDTS" train --distributed mpi "${COMMON[@]}" --epochs 100000 \
    --sync step --out "$KILLED" >"$WORK/kill.out" 2>"$WORK/kill.err" &
TIMEOUT_PID=$!
PIDS+=("$TIMEOUT_PID")
for _ in $(seq 1 300); do
    [ -s "$KILLED/checkpoint.bin" ] && break
    sleep 0.1
done
MPIRUN_PID=$(pgrep -P "$TIMEOUT_PID" | head -1)
RANKS=$(pgrep -P "${MPIRUN_PID:-0}" | tr '\n' ' ')
[ -n "$RANKS" ] || fail "no rank processes under mpirun $MPIRUN_PID"
VICTIM=$(echo "$RANKS" | awk '{print $2}')
kill -9 "${VICTIM:-0}" 2>/dev/null
wait "$TIMEOUT_PID"
rc=$?
if [ "$rc" != 0 ] && [ "$rc" != 124 ]; then
    N_PASS=$((N_PASS + 1))
    echo "killed rank $VICTIM: mpirun exited $rc"
else
    fail "killed rank: mpirun exited $rc (expected a failure, not a hang)"
fi
# mpirun terminates the other ranks as it exits; give them a moment to go.
for p in $RANKS; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then
        fail "rank process $p survived mpirun: $(ps -o pid,stat,cmd -p "$p" | tail -1)"
        kill -9 "$p"
    fi
done
DONE=$($PY -c 'import struct,sys; print(struct.unpack_from("<i", open(sys.argv[1],"rb").read(), 12)[0])' "$KILLED/checkpoint.bin")
echo "killed after $DONE whole epochs"
run_expect 0 "${MPIRUN[@]}" -np 2 "$DDTS" train --distributed mpi "${COMMON[@]}" \
    --epochs $((DONE + 2)) --sync step --out "$KILLED" --resume
[ "$(rows "$KILLED/history.csv")" = $((DONE + 2)) ] ||
    fail "resume after a kill: $(rows "$KILLED/history.csv") rows, expected $((DONE + 2))"
finish
