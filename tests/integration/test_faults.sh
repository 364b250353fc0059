#!/bin/bash
# Fault tolerance and determinism of distributed training, with real processes
# on 127.0.0.1 (issue 7): identical runs give bit-identical weights; a client
# killed with SIGKILL mid-epoch loses its share to the other client and the
# accuracy stays close to the undisturbed run; a client stopped with SIGSTOP
# does not hold the rounds past --client-timeout; a server killed and restarted
# on the same --workdir resumes and completes; --sync steps:K, step and none,
# and k-fold with --sync epoch, run end to end.
set -u
. "$DDTS_SOURCE_DIR/tests/integration/lib.sh"
PY=/usr/bin/python3
# For measurements: DDTS_FAULTS_SEED (11), DDTS_FAULTS_SECTIONS (all: "1 2 3 4 5").
SEED=${DDTS_FAULTS_SEED:-11}
# Sections 1-4: enough work per epoch (about 0.4 s here) that a fault lands
# mid-job. A small learning rate keeps the last epoch's accuracy from swinging
# by 2-4 points from epoch to epoch (as it does with Adam's default 0.001
# here), which would drown the 1-point comparison (docs/distributed.md).
EPOCHS=${DDTS_FAULTS_EPOCHS:-3}
SAMPLES=${DDTS_FAULTS_SAMPLES:-20000}
SECTIONS=" ${DDTS_FAULTS_SECTIONS:-1 2 3 4 5} "
want() { [[ $SECTIONS == *" $1 "* ]]; }
printf 'fault tolerant passphrase\n' >"$WORK/pass"
chmod 600 "$WORK/pass"
run_expect 0 "$DDTS" model new "$DDTS_SOURCE_DIR/examples/fashion_mlp.json" -o "$WORK/mlp.h5"

# start_server TAG PORT EPOCHS EXTRA...: a job named TAG in $WORK/TAG/server.
start_server() {
    local tag=$1 port=$2 epochs=$3
    shift 3
    mkdir -p "$WORK/$tag"
    "$DDTS" server --host 127.0.0.1 --port "$port" --passphrase-file "$WORK/pass" \
        --model "$WORK/mlp.h5" --clients 2 --epochs "$epochs" --batch-size 32 --data keras \
        --keras-dataset fashion_mnist --samples "$SAMPLES" --normalizer simple --learning-rate 0.0003 --seed "$SEED" \
        --threads 1 --workdir "$WORK/$tag/server" --name "$tag" --client-timeout 10 "$@" \
        >>"$WORK/$tag/server.out" 2>>"$WORK/$tag/server.err" &
    SERVER=$!
    PIDS+=("$SERVER")
}

# start_client TAG PORT I: client I of job TAG (workdir $WORK/TAG/cI); pid in CLIENT.
start_client() {
    local tag=$1 port=$2 i=$3
    "$DDTS" client --server "127.0.0.1:$port" --passphrase-file "$WORK/pass" \
        --workdir "$WORK/$tag/c$i" --name "c$i" --threads 1 --retries 40 \
        >>"$WORK/$tag/c$i.out" 2>>"$WORK/$tag/c$i.err" &
    CLIENT=$!
    PIDS+=("$CLIENT")
}

# wait_for SECONDS CMD...: polls CMD every 0.2 s; fails after SECONDS.
wait_for() {
    local limit=$1
    shift
    local t0=$SECONDS
    while ! "$@" 2>/dev/null; do
        [ $((SECONDS - t0)) -ge "$limit" ] && return 1
        sleep 0.05
    done
}

# wait_pid SECONDS PID: waits for PID, killing it after SECONDS; returns its status.
wait_pid() {
    local limit=$1 pid=$2 t0=$SECONDS
    while kill -0 "$pid" 2>/dev/null; do
        if [ $((SECONDS - t0)) -ge "$limit" ]; then
            kill -9 "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
            return 124
        fi
        sleep 0.2
    done
    wait "$pid"
}

# run_job TAG EPOCHS EXTRA...: an undisturbed job with 2 clients.
run_job() {
    local tag=$1 epochs=$2
    shift 2
    local port
    port=$(free_port)
    start_server "$tag" "$port" "$epochs" "$@"
    local s=$SERVER
    sleep 0.3
    start_client "$tag" "$port" 1
    local c1=$CLIENT
    start_client "$tag" "$port" 2
    local c2=$CLIENT
    wait_pid 120 "$c1" || fail "$tag: client 1 failed: $(tail -3 "$WORK/$tag/c1.err")"
    wait_pid 120 "$c2" || fail "$tag: client 2 failed: $(tail -3 "$WORK/$tag/c2.err")"
    wait_pid 60 "$s" || fail "$tag: server failed: $(tail -5 "$WORK/$tag/server.err")"
}

accuracy() { sed -n 's/^test accuracy: //p' "$WORK/$1/server.out" | tail -1; }

# same_weights A.h5 B.h5: every dataset under model_weights bit-identical.
same_weights() {
    $PY - "$1" "$2" <<'PYEOF'
import sys, h5py, numpy as np
a, b = (h5py.File(p, 'r') for p in sys.argv[1:])
names = []
a['model_weights'].visit(names.append)
n = 0
for k in names:
    if isinstance(a['model_weights'][k], h5py.Dataset):
        x, y = a['model_weights'][k][()], b['model_weights'][k][()]
        if x.shape != y.shape or x.tobytes() != y.tobytes():
            print('differs:', k); sys.exit(1)
        n += 1
assert n > 0
print(n, 'weight datasets bit-identical')
PYEOF
}

log_has() { grep -q "$2" "$WORK/$1/server.err"; }

# Share log of client I of job TAG exists and shows epoch E.
at_epoch() { grep -qs "epoch $3/" "$WORK/$1/c$2/$1"/share_*/results/train.log; }

# ---- 1. determinism: two identical runs, bit-identical global weights ----
if want 1; then

run_job base "$EPOCHS" --sync epoch
run_job base2 "$EPOCHS" --sync epoch
G=server/base/global/model.h5
[ -s "$WORK/base/$G" ] || fail "base: no global model"
same_weights "$WORK/base/$G" "$WORK/base2/server/base2/global/model.h5" ||
    fail "two identical runs gave different global weights"
ACC0=$(accuracy base)
echo "undisturbed run: test accuracy $ACC0 (repeat: $(accuracy base2))"
[ "$ACC0" = "$(accuracy base2)" ] || fail "identical runs: accuracy $ACC0 vs $(accuracy base2)"
fi

# ---- 2. kill -9 of a client mid-epoch: the other client trains its share ----
if want 2; then

PORT=$(free_port)
start_server kill "$PORT" "$EPOCHS" --sync epoch
S=$SERVER
sleep 0.3
start_client kill "$PORT" 1
C1=$CLIENT
start_client kill "$PORT" 2
C2=$CLIENT
wait_for 60 at_epoch kill 1 1 || fail "kill: client 1 never finished epoch 1"
sleep 0.15 # into epoch 2 (about 0.4 s)
kill -9 "$C1" || fail "kill: client 1 had finished before it could be killed"
wait_pid 150 "$C2" || fail "kill: client 2 failed: $(tail -3 "$WORK/kill/c2.err")"
wait_pid 60 "$S" || fail "kill: server failed: $(tail -5 "$WORK/kill/server.err")"
log_has kill "reassigned from 'c1' to 'c2'" || fail "kill: the lost share was not reassigned"
# The taker skips the epochs the share already contributed: the rounds that
# completed with both clients (usually 1; 0 when the kill caught the exchange).
N2=$(grep -c 'complete: 2 contributions' "$WORK/kill/server.err")
if [ "$N2" -gt 0 ]; then
    grep -q "already contributed $N2 rounds: training from epoch $((N2 + 1)) of" \
        "$WORK/kill/c2.err" || fail "kill: the taken-over share did not resume at epoch $((N2 + 1))"
else
    grep -q "already contributed" "$WORK/kill/c2.err" &&
        fail "kill: the share contributed nothing, yet the taker skipped epochs"
fi
echo "kill: the share had contributed $N2 rounds when it was lost"
# Every sample trained for every epoch, none twice: the taker's history of the
# lost share holds the epochs it still owed, and the rounds' samples add up to
# EPOCHS x SAMPLES (each share trains alone once its partner is gone; the lost
# client's unfinished epoch never reached a round).
H=$(ls "$WORK"/kill/server/kill/clients/c2-s*/history.csv 2>/dev/null | head -1)
E2=$(($(cat "${H:-/dev/null}" | wc -l) - 1))
[ "$E2" = $((EPOCHS - N2)) ] ||
    fail "kill: the taker trained $E2 epochs of the lost share, expected $((EPOCHS - N2))"
TOTAL=$(sed -n 's/.*round [0-9]* complete: [0-9]* contributions, \([0-9]*\) samples.*/\1/p' \
    "$WORK/kill/server.err" | awk '{ t += $1 } END { print t }')
[ "$TOTAL" = $((EPOCHS * SAMPLES)) ] ||
    fail "kill: the rounds trained $TOTAL samples in all, expected $EPOCHS x $SAMPLES"
grep -q "reassigned from 'c1' to 'c2'" "$WORK/kill/server/kill/summary.txt" ||
    fail "kill: summary.txt does not list the reassignment"
grep -q '"c2-s' "$WORK/kill/server/kill/summary.json" ||
    fail "kill: summary.json lacks the reassigned share's results"
ACC1=$(accuracy kill)
echo "client killed after epoch 1: test accuracy $ACC1 (undisturbed $ACC0)"
# The failure must not make the model worse: at most 1 point below the
# undisturbed run (the issue's bar). It may come out *better*: once the share's
# partner is gone, the two shares are trained one after the other from the
# global weights (the data accounting above is exact), i.e. with twice the
# sequential optimizer steps per epoch of the averaged job, and this 3-epoch job
# is far from converged. Measured over seeds 1-7 (docs/distributed.md): -0.67
# to +1.22 points, median +0.58; 2 points above is the sanity bound.
$PY -c "import sys; d = float('${ACC1:-0}') - float('${ACC0:-1}'); sys.exit(0 if -0.01 <= d <= 0.02 else 1)" ||
    fail "kill: accuracy $ACC1 is not within [-1, +2] points of the undisturbed $ACC0"
fi

# ---- 3. SIGSTOP: a stopped client does not hold the rounds ----
if want 3; then

PORT=$(free_port)
start_server stop "$PORT" "$EPOCHS" --sync epoch
S=$SERVER
sleep 0.3
start_client stop "$PORT" 1
C1=$CLIENT
start_client stop "$PORT" 2
C2=$CLIENT
wait_for 60 at_epoch stop 1 1 || fail "stop: client 1 never finished epoch 1"
kill -STOP "$C1" || fail "stop: client 1 had finished before it could be stopped"
T0=$SECONDS
wait_pid 150 "$C2" || fail "stop: client 2 failed: $(tail -3 "$WORK/stop/c2.err")"
wait_pid 60 "$S" || fail "stop: the job did not finish while a client was stopped"
echo "stop: job finished $((SECONDS - T0)) s after SIGSTOP (client timeout 10 s)"
log_has stop "'c1'.*marked lost" || fail "stop: the stopped client was not marked lost"
grep -q "'c1'.*marked lost" "$WORK/stop/server/stop/events.log" ||
    fail "stop: events.log does not list the lost client"
# Woken up, it finds its connection closed and the server gone (it would retry
# --retries times): done with it.
kill -CONT "$C1" 2>/dev/null
sleep 1
kill -9 "$C1" 2>/dev/null
wait "$C1" 2>/dev/null
[ -s "$WORK/stop/server/stop/global/model.h5" ] || fail "stop: no global model"
fi

# ---- 4. the server killed mid-job and restarted on the same workdir ----
if want 4; then

PORT=$(free_port)
start_server restart "$PORT" "$EPOCHS" --sync epoch
S=$SERVER
sleep 0.3
start_client restart "$PORT" 1
C1=$CLIENT
start_client restart "$PORT" 2
C2=$CLIENT
wait_for 60 log_has restart "round 2 complete" || fail "restart: round 2 never completed"
log_has restart "every share's results are received" && fail "restart: the job ended too soon"
kill -9 "$S"
wait "$S" 2>/dev/null
sleep 1
start_server restart "$PORT" "$EPOCHS" --sync epoch
S=$SERVER
wait_pid 150 "$C1" || fail "restart: client 1 failed: $(tail -3 "$WORK/restart/c1.err")"
wait_pid 150 "$C2" || fail "restart: client 2 failed: $(tail -3 "$WORK/restart/c2.err")"
wait_pid 60 "$S" || fail "restart: restarted server failed: $(tail -5 "$WORK/restart/server.err")"
log_has restart "resuming job 'restart'" || fail "restart: the server did not resume"
# The clients continue at the epoch after the saved round, not from scratch.
grep -q "already contributed [1-9][0-9]* rounds" "$WORK/restart/c1.err" "$WORK/restart/c2.err" ||
    fail "restart: the clients started their shares over"
echo "server restarted mid-job: test accuracy $(accuracy restart)"
[ -n "$(accuracy restart)" ] || fail "restart: no final accuracy"
# Every epoch once in each client's history.csv: none lost, none twice (issue 13).
for i in 1 2; do
    h="$WORK/restart/server/restart/clients/c$i/history.csv"
    want=$(seq 0 $((EPOCHS - 1)) | tr '\n' ' ')
    got=$(tail -n +2 "$h" | cut -d, -f1 | tr '\n' ' ')
    [ "$got" = "$want" ] || fail "restart: c$i's history.csv epochs '$got' (want '$want')"
done
fi

# ---- 5. the other synchronisation modes and k-fold ----
if want 5; then
SAMPLES=6000

# Clients exchange the same number of times: both logs show the same rounds.
rounds() { grep -c 'round [0-9]* complete' "$WORK/$1/server.err"; }
run_job steps 2 --sync steps:20
echo "steps:20: $(rounds steps) rounds, accuracy $(accuracy steps)"
# 3000 samples per client, batch 32: 93 batches, 4 exchanges of 20 per epoch + 1 at its end.
[ "$(rounds steps)" = 10 ] || fail "steps:20: $(rounds steps) rounds, expected 10"
run_job step 1 --sync step
echo "step: $(rounds step) rounds, accuracy $(accuracy step)"
[ "$(rounds step)" = 94 ] || fail "step: $(rounds step) rounds, expected 94"
for t in steps step; do
    same_weights "$WORK/$t/server/$t/clients/c1/model.h5" "$WORK/$t/server/$t/clients/c2/model.h5" ||
        fail "$t: the clients end with different weights"
done
run_job none 2 --sync none
# The server creates global/ for every job; without rounds it stays empty.
[ -z "$(ls -A "$WORK/none/server/none/global" 2>/dev/null)" ] ||
    fail "none: global/ holds $(ls "$WORK/none/server/none/global")"
grep -q '"c2"' "$WORK/none/server/none/summary.json" || fail "none: summary.json lacks c2"
same_weights "$WORK/none/server/none/clients/c1/model.h5" \
    "$WORK/none/server/none/clients/c2/model.h5" >/dev/null &&
    fail "none: the two clients' models are identical"
run_job kfold 1 --sync epoch --method kfold --folds 3
for i in 1 2; do
    for f in 1 2 3; do
        [ -s "$WORK/kfold/server/kfold/clients/c$i/fold_$f/history.csv" ] ||
            fail "kfold: c$i fold $f missing"
    done
    grep -q '"fold_values"' "$WORK/kfold/server/kfold/clients/c$i/summary.json" ||
        fail "kfold: c$i has no per-fold results"
done
grep -q '"kfold_mean_val_accuracy"' "$WORK/kfold/server/kfold/summary.json" ||
    fail "kfold: the job's summary has no k-fold mean naming its metric"
grep -q 'kfold_std_val_accuracy' "$WORK/kfold/server/kfold/summary.txt" ||
    fail "kfold: the readable summary has no k-fold std naming its metric"
for f in 1 2 3; do
    grep -q "\"fold_${f}_val_accuracy\"" "$WORK/kfold/server/kfold/summary.json" ||
        fail "kfold: fold $f is not labelled in the job's summary"
done
fi

finish
