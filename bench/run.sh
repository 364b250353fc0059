#!/bin/sh
# ddts benchmarks (`make bench`): never tests. One result line per case, the
# peer's figure beside ddts' and the ratio ddts/peer. See docs/benchmarks.md.
#   sh bench/run.sh BUILD_DIR        BENCH_QUICK=1: a fast smoke run
#   BENCH_CASES="engine train data transfer dist mpi examples recurrent" picks cases; BENCH_MB
#   sets the shard size; BENCH_TRAIN_SAMPLES / BENCH_TRAIN_ROUNDS size the train case
#   (BENCH_TRAIN_MODELS="cnn cnn_dropout" picks its models),
#   BENCH_RNN_SAMPLES / BENCH_RNN_ROUNDS / BENCH_RNN_SEEDS the recurrent case.
set -u
B=${1:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
Q=${BENCH_QUICK:-0}
CASES=${BENCH_CASES:-engine train data transfer dist mpi examples recurrent}
W=$(mktemp -d "${TMPDIR:-/tmp}/ddts-bench.XXXXXX")
# A signal ends the run (the EXIT trap then removes the work folder): a
# trap that only removed it would let the next case run without its files.
trap 'rm -rf "$W"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
HAVE_TORCH=0
$PY -c 'import torch' 2>/dev/null && HAVE_TORCH=1
# ratio A B: A/B with two decimals, "n/a" when either is missing
ratio() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN{ if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }
now() { date +%s.%N; }
# stats V...: "median (min-max)" of the values that are not n/a or empty (the lower middle of two)
stats() { printf '%s\n' "$@" | grep -v -e '^n/a$' -e '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else printf "%s (%s-%s)", v[int((NR + 1) / 2)], v[1], v[NR] }'; }
med() { stats "$@" | cut -d' ' -f1; }
# tfield FILE NAME: a "NAME: value" line of ddts train's output
tfield() { sed -n "s/^$2: //p" "$1" 2>/dev/null; }
# peak_rss FILE CMD...: runs CMD (its output where the caller sends it) and
# writes its peak RSS in MiB (getrusage of the waited-for child: the same
# measure for ddts and the peer) to FILE; CMD's exit status.
peak_rss() {
    _f=$1
    shift
    $PY -c 'import resource, subprocess, sys
r = subprocess.call(sys.argv[2:])
open(sys.argv[1], "w").write("%.1f\n" % (resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0))
sys.exit(r)' "$_f" "$@"
}
# cfg_env CFG: the environment assignment of a peer thread configuration
# (nothing for PyTorch's default), for `env $(cfg_env CFG) CMD`
cfg_env() { [ "$1" = default ] || echo "$1"; }
# pick_config LABEL UNIT BETTER MEASURE [ARGS...]: runs "MEASURE CFG ARGS..."
# (it prints one figure) for PyTorch's default, OMP_WAIT_POLICY=passive and
# OPENBLAS_NUM_THREADS=1 (each with torch.set_num_threads(N)) in two
# alternating passes, since one short run picks a slower configuration when
# the VM drifts during it; prints "LABEL, CFG, pass P: FIGURE UNIT" and sets
# PICKED to the configuration of the best single figure (BETTER: < for
# seconds, > for rates), empty when every run failed.
pick_config() {
    _label=$1 _unit=$2 _better=$3 _measure=$4
    shift 4
    PICKED='' _bestv=''
    for pass in 1 2; do
        for cfg in default OMP_WAIT_POLICY=passive OPENBLAS_NUM_THREADS=1; do
            v=$("$_measure" "$cfg" "$@")
            echo "$_label, $cfg, pass $pass: ${v:-n/a} $_unit"
            if [ -n "$v" ] && { [ -z "$_bestv" ] || awk -v a="$v" -v b="$_bestv" "BEGIN{ exit !(a $_better b) }"; }; then
                PICKED=$cfg _bestv=$v
            fi
        done
    done
}
# train_epoch CFG T N MODELS [ARGS...]: the summed epoch seconds of a
# bench/torch_train.py run of MODELS (comma-separated) at T threads over N
# samples in configuration CFG; nothing when a model's line is missing
train_epoch() {
    _cfg=$1 _t=$2 _n=$3 _models=$4
    shift 4
    # shellcheck disable=SC2046 # cfg_env: no word for the default
    env $(cfg_env "$_cfg") $PY "$SRC/bench/torch_train.py" --models "$_models" --threads "$_t" --samples "$_n" "$@" 2>/dev/null |
        sed -n 's/.*: epoch \([0-9.]*\) s.*/\1/p' |
        awk -v n="$(echo "$_models" | tr , '\n' | wc -l)" '{ s += $1 } END { if (NR == n) print s }'
}
# peer_config CASE MODELS N [ARGS...]: the peer's thread configuration per
# thread count, in TCFG_1 and TCFG_2: pick_config over short torch_train.py
# runs of MODELS over N samples with ARGS; N = 0 (quick runs): not searched,
# OPENBLAS_NUM_THREADS=1 (never oversubscribed).
peer_config() {
    _case=$1 _pmodels=$2 _pn=$3
    shift 3
    for t in 1 2; do
        PICKED=
        if [ $HAVE_TORCH = 1 ] && [ "$_pn" -gt 0 ]; then
            pick_config "$_case peer configuration, $t thread(s)" \
                "s, $(echo "$_pmodels" | sed 's/,/ + /g') epoch ($_pn samples)" '<' train_epoch $t "$_pn" "$_pmodels" "$@"
        fi
        eval "TCFG_$t=\${PICKED:-OPENBLAS_NUM_THREADS=1}"
        echo "$_case peer configuration, $t thread(s), for $(echo "$_pmodels" | sed 's/,/ + /g'): using ${PICKED:-OPENBLAS_NUM_THREADS=1 (not searched, or no run succeeded)}"
    done
}
echo "ddts bench on $(uname -n), $(nproc) cores, load:$(uptime | sed 's/.*load average://'), quick=$Q"

case " $CASES " in *" engine "*)
    echo "== engine (issue 3): Fashion-MNIST, Adam; samples/s at batch 128, test accuracy after 2 epochs at batch 32 =="
    # Full data (accuracy on all 60000 training samples, median of seeds 1-10, each
    # giving the initial weights and the shuffling order); BENCH_QUICK=1 trains on
    # 6000 (a smoke run: +-2 points from the shuffling alone).
    EQ=; [ "$Q" = 1 ] && EQ=--quick
    "$B/bench_engine" $EQ >"$W/ddts_engine.txt" 2>&1 || echo "bench_engine failed: $(tail -3 "$W/ddts_engine.txt")"
    grep -E '^(sgemm|OpenBLAS)' "$W/ddts_engine.txt"
    # The peer's thread configuration per model and thread count (ECFG_M_T):
    # pick_config over a round's own throughput run of that model at T
    # threads (a one-pass probe of a quarter of the samples once picked a
    # configuration 25 % slower over a round); BENCH_QUICK=1: not searched,
    # OPENBLAS_NUM_THREADS=1. Each model and thread count then runs in its
    # own process in its own configuration (until session 8 one process ran
    # both thread counts in PyTorch's default, whose OpenMP and OpenBLAS
    # threads oversubscribe two cores at 2 threads).
    # peer_tp CFG M T [ARGS...]: the peer's samples/s for model M at T threads
    peer_tp() {
        _c=$1 _m=$2 _t=$3
        shift 3
        # shellcheck disable=SC2046 # cfg_env: no word for the default
        env $(cfg_env "$_c") $PY "$SRC/bench/torch_engine.py" --throughput --only "$_m" --threads "$_t" "$@" 2>/dev/null |
            sed -n "s/^$_m: train samples\/s at batch 128, $_t thread(s): \([0-9.]*\)$/\1/p"
    }
    # peer_round R: one throughput round of the peer, into torch_tpR.txt
    peer_round() {
        : >"$W/torch_tp$1.txt"
        [ $HAVE_TORCH = 1 ] || return 0
        for m in mlp cnn; do
            for t in 1 2; do
                eval "_c=\$ECFG_${m}_$t"
                echo "$m: train samples/s at batch 128, $t thread(s): $(peer_tp "$_c" $m $t $EQ)" >>"$W/torch_tp$1.txt"
            done
        done
    }
    if [ $HAVE_TORCH = 1 ]; then
        for m in mlp cnn; do
            for t in 1 2; do
                PICKED=
                [ "$Q" = 1 ] || pick_config "engine peer configuration, $m, $t thread(s)" samples/s '>' peer_tp $m $t
                eval "ECFG_${m}_$t=\${PICKED:-OPENBLAS_NUM_THREADS=1}"
                echo "engine peer configuration, $m, $t thread(s): using ${PICKED:-OPENBLAS_NUM_THREADS=1 (not searched, or no run succeeded)}"
            done
        done
        peer_round 1
        # accuracy at 2 threads, each model in its 2-thread configuration
        : >"$W/torch_engine.txt"
        for m in mlp cnn; do
            eval "_c=\$ECFG_${m}_2"
            # shellcheck disable=SC2046 # cfg_env: no word for the default
            env $(cfg_env "$_c") $PY "$SRC/bench/torch_engine.py" $EQ --accuracy --only $m >>"$W/torch_engine.txt" 2>&1 ||
                echo "torch_engine $m failed: $(tail -n 1 "$W/torch_engine.txt")"
        done
    else
        echo "(PyTorch not installed: Debian python3-torch; peer figures n/a)" >"$W/torch_engine.txt"
        peer_round 1
    fi
    # Samples/s move by 10-25 % over minutes on a shared VM, on both sides:
    # two more throughput rounds, ddts and PyTorch alternating, and the
    # median over the three rounds of each side's figure and of the ratio.
    cp "$W/ddts_engine.txt" "$W/ddts_tp1.txt"
    for r in 2 3; do
        "$B/bench_engine" $EQ --throughput >"$W/ddts_tp$r.txt" 2>&1
        peer_round $r
    done
    # tp FILE MODEL THREADS: samples/s from one bench_engine / torch_engine output
    # (bench_engine's line has both thread counts, the peer's a line each)
    tp() {
        sed -n -e "s/^$2: train samples\/s.*: \([0-9.]*\) (1 thread), \([0-9.]*\) (2 threads).*/\\$3/p" \
            -e "s/^$2: train samples\/s at batch 128, $3 thread(s): \([0-9.]*\)$/\1/p" "$1"
    }
    # med3 V...: the median of the values that are not n/a (the lower middle of two)
    med3() { printf '%s\n' "$@" | grep -v '^n/a$' | sort -g | awk '{ v[NR] = $1 } END { if (NR > 0) print v[int((NR + 1) / 2)] }'; }
    for m in mlp cnn; do
        for t in 1 2; do
            ds= ps= rs=
            for r in 1 2 3; do
                d=$(tp "$W/ddts_tp$r.txt" $m $t)
                p=$(tp "$W/torch_tp$r.txt" $m $t)
                ds="$ds ${d:-n/a}" ps="$ps ${p:-n/a}" rs="$rs $(ratio "$d" "$p")"
            done
            # shellcheck disable=SC2086
            echo "engine $m samples/s, $t thread(s): ddts $(med3 $ds)  PyTorch $(med3 $ps)  ratio $(med3 $rs)  (rounds: ddts$ds; PyTorch$ps; ratios$rs)"
        done
        # the FLOP rate of each round against the sgemm measured right before it
        sed -n "s/^$m: training FLOPs per sample/engine $m training FLOPs per sample (from the layer shapes)/p" "$W/ddts_tp1.txt"
        for r in 1 2 3; do
            sed -n "s/^$m: \([12]\) thread(s): /engine $m round $r, \1 thread(s): /p; s/^$m: 1 thread: /engine $m round $r, 1 thread: /p; s/^$m: 2 threads, batch split/engine $m round $r, 2 threads, batch split/p" "$W/ddts_tp$r.txt"
        done
        d=$(sed -n "s/^$m: test accuracy.*: \([0-9.]*\) (.*/\1/p" "$W/ddts_engine.txt")
        p=$(sed -n "s/^$m: test accuracy.*: \([0-9.]*\) (.*/\1/p" "$W/torch_engine.txt")
        echo "engine $m test accuracy: ddts ${d:-n/a}  PyTorch ${p:-n/a}  difference $(awk -v a="$d" -v b="$p" 'BEGIN{ if (a == "" || b == "") print "n/a"; else printf "%+.4f", a - b }')"
        echo "  per seed: ddts$(sed -n "s/^$m: test accuracy.*shuffling):\(.*\)/\1/p" "$W/ddts_engine.txt")  PyTorch$(sed -n "s/^$m: test accuracy.*shuffling):\(.*\)/\1/p" "$W/torch_engine.txt")"
    done
    # Fidelity apart from seeds: same initial weights and batches on both sides.
    FN=60000; [ "$Q" = 1 ] && FN=6000
    for m in mlp cnn; do
        mkdir -p "$W/fid_$m"
        if ! "$B/bench_fidelity" $m $FN "$W/fid_$m" >/dev/null 2>"$W/fid_$m.err"; then
            echo "fidelity $m: bench_fidelity failed: $(tail -1 "$W/fid_$m.err")"
        elif [ $HAVE_TORCH = 1 ]; then
            $PY "$SRC/bench/torch_fidelity.py" $m $FN "$W/fid_$m" || echo "fidelity $m: torch_fidelity failed"
        else
            echo "fidelity $m: n/a (PyTorch not installed)"
        fi
    done
    # ddts' idle threads spin GOMP_SPINCOUNT=2000 rounds before they sleep
    # (ddts_nn_env_hints); GOMP_SPINCOUNT=0 is the pure passive waiting of
    # earlier runs: one throughput round of each, for the 2-thread figures.
    GOMP_SPINCOUNT=0 "$B/bench_engine" $EQ --throughput 2>&1 | sed -n 's/^\(mlp\|cnn\): train samples/engine (GOMP_SPINCOUNT=0, previous setting) \1: train samples/p'
    d=$(sed -n 's/^peak RSS: \([0-9.]*\).*/\1/p' "$W/ddts_engine.txt")
    # the peer's largest process (each model's accuracy run holds the data set)
    p=$(sed -n 's/^peak RSS: \([0-9.]*\).*/\1/p' "$W/torch_engine.txt" | sort -g | tail -n 1)
    echo "engine peak RSS MiB: ddts ${d:-n/a}  PyTorch ${p:-n/a}  ratio $(ratio "$d" "$p")"
;; esac

case " $CASES " in *" train "*)
    # The path users run (issue 16): `ddts train` (the CLI) for one epoch with
    # its validation pass against bench/torch_train.py doing the same work.
    TN=${BENCH_TRAIN_SAMPLES:-60000}; TR=${BENCH_TRAIN_ROUNDS:-3}; PN=6000; PR=3
    TMODELS=${BENCH_TRAIN_MODELS:-mlp mlp_dropout cnn cnn_dropout}
    # quick (< 1 min): two models, one round, one prediction pass, no search
    # of the peer's threading (OPENBLAS_NUM_THREADS=1: never oversubscribed)
    QNOTE=
    [ "$Q" = 1 ] && { TN=2000; TR=1; PN=0; PR=1; TMODELS="mlp cnn_dropout"
        QNOTE=" (quick: a 2000-sample epoch against 10000 validated, not comparable)"; }
    echo "== train (issue 16): ddts train CLI vs PyTorch, Fashion-MNIST $TN training samples, 1 epoch at batch 128 + validation on 10000, --normalizer simple, Adam; $TR round(s) alternating =="
    "$B/ddts" model new "$SRC/examples/fashion_mlp.json" -o "$W/t_mlp.h5" >/dev/null 2>&1 &&
        "$B/ddts" model new "$SRC/examples/fashion_cnn.json" -o "$W/t_cnn.h5" >/dev/null 2>&1 &&
        "$B/ddts" model new --input-shape 28,28,1 -o "$W/t_mlp_dropout.h5" \
            --layers flatten,dense:256:relu,dropout:0.2,dense:128:relu,dropout:0.2,dense:10:softmax >/dev/null 2>&1 &&
        "$B/ddts" model new --input-shape 28,28,1 -o "$W/t_cnn_dropout.h5" \
            --layers conv2d:32:3:relu,maxpool2d:2,conv2d:64:3:relu,maxpool2d:2,flatten,dropout:0.25,dense:128:relu,dropout:0.5,dense:10:softmax >/dev/null 2>&1 ||
        echo "train: ddts model new failed"
    # The peer's thread configuration per thread count and per model family
    # (peer_config on a short run of the MLP, then of the CNN): one choice
    # for both once gave the MLP at 2 threads a configuration 2.3x slower
    # than its best (the CNN's gain outweighed it in the sum).
    peer_config train mlp $PN
    TCFG_mlp_1=$TCFG_1 TCFG_mlp_2=$TCFG_2
    peer_config train cnn $PN
    TCFG_cnn_1=$TCFG_1 TCFG_cnn_2=$TCFG_2
    for r in $(seq 1 "$TR"); do
        for t in 1 2; do
            for m in $TMODELS; do
                o="$W/train-$m-$t"
                rm -rf "$o"
                t0=$(now)
                "$B/ddts" train --model "$W/t_$m.h5" --data keras --keras-dataset fashion_mnist \
                    --samples $TN --epochs 1 --batch-size 128 --normalizer simple --seed 1 \
                    --threads $t --out "$o" >"$o.out" 2>"$o.err" || echo "train $m failed: $(tail -2 "$o.err")"
                t1=$(now)
                ep=$(tfield "$o.out" seconds)
                fs=$(sed -n 's/.*first training step done \([0-9.]*\) ms.*/\1/p' "$o/train.log" 2>/dev/null)
                pb=
                for k in $(seq 1 $PR); do
                    p=$("$B/ddts" predict --model "$o/model.h5" --keras-dataset fashion_mnist --batch-size 128 \
                        --threads $t -o "$W/pred.npy" 2>&1 >/dev/null | sed -n 's/.*(\([0-9.]*\) samples\/s).*/\1/p')
                    [ -n "$p" ] && { [ -z "$pb" ] || awk -v a="$p" -v b="$pb" 'BEGIN{ exit !(a > b) }'; } && pb=$p
                done
                # train.log: the epoch's training steps and its validation pass apart
                tv=$(sed -n 's/.*timing of epoch 1: training \([0-9.]*\) s, validation \([0-9.]*\) s.*/\1 \2/p' "$o/train.log" 2>/dev/null)
                # and the CPU time of all its threads over the same epoch
                tc=$(sed -n 's/.*timing of epoch 1: .*CPU (all threads): training \([0-9.]*\) s, validation \([0-9.]*\) s.*/\1 \2/p' "$o/train.log" 2>/dev/null |
                    awk '{ printf "%.3f", $1 + $2 }')
                echo "$r $t $m ${ep:-n/a} $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b - a}') ${fs:-n/a} ${pb:-n/a} $(tfield "$o.out" val_accuracy) ${tv:-n/a n/a} ${tc:-n/a}" >>"$W/train_ddts.txt"
            done
            # the engine's own loop on the same model (bench_engine: training
            # steps only, 1 and 2 threads in one run), for "ddts train within
            # 10 % of the engine": one epoch of the same TN samples (--reps 1,
            # as ddts train runs one), after the sgemm reference of this round
            for m in $TMODELS; do
                case $t.$m in 1.mlp | 1.cnn) ;; *) continue ;; esac
                "$B/bench_engine" --throughput --only "$m" --samples $TN --reps 1 >"$W/engine-$r-$m.txt" 2>&1 ||
                    echo "train: bench_engine $m failed: $(tail -2 "$W/engine-$r-$m.txt")"
                sed -n "s/^$m: train samples\/s.*: \([0-9.]*\) (1 thread), \([0-9.]*\) (2 threads).*/$r 1 $m \1\n$r 2 $m \2/p" \
                    "$W/engine-$r-$m.txt" >>"$W/train_engine.txt"
            done
            if [ $HAVE_TORCH = 1 ]; then
                for fam in mlp cnn; do
                    ms=$(for m in $TMODELS; do case $m in "$fam"*) printf '%s,' "$m" ;; esac; done)
                    [ -n "$ms" ] || continue
                    eval "cfg=\$TCFG_${fam}_$t"
                    # shellcheck disable=SC2046 # cfg_env: no word for the default
                    env $(cfg_env "$cfg") $PY "$SRC/bench/torch_train.py" --models "${ms%,}" --threads $t \
                        --samples $TN --predict-passes $PR 2>"$W/torch_train.err" | sed "s/^/$r /" >>"$W/train_torch.txt" ||
                        echo "torch_train failed: $(tail -2 "$W/torch_train.err")"
                done
            fi
        done
    done
    echo "train table: seconds per epoch incl. validation (median (min-max) over rounds), samples/s = $TN / that, ratio = PyTorch s / ddts s"
    for t in 1 2; do
        for m in $TMODELS; do
            case $m in mlp*) eval "cfg=\$TCFG_mlp_$t" ;; *) eval "cfg=\$TCFG_cnn_$t" ;; esac
            ds=$(awk -v t=$t -v m=$m '$2 == t && $3 == m { print $4 }' "$W/train_ddts.txt")
            ps=$(sed -n "s/^\([0-9]*\) train $m threads $t: epoch \([0-9.]*\) s.*/\2/p" "$W/train_torch.txt" 2>/dev/null)
            rs=
            for r in $(seq 1 "$TR"); do
                d=$(awk -v r=$r -v t=$t -v m=$m '$1 == r && $2 == t && $3 == m { print $4 }' "$W/train_ddts.txt")
                p=$(sed -n "s/^$r train $m threads $t: epoch \([0-9.]*\) s.*/\1/p" "$W/train_torch.txt" 2>/dev/null)
                rs="$rs $(ratio "$p" "$d")"
            done
            # shellcheck disable=SC2086
            dm=$(med $ds) pm=$(med $ps)
            echo "train $m, $t thread(s): ddts $(stats $ds) s = $(awk -v n=$TN -v s="$dm" 'BEGIN{ if (s + 0 > 0) printf "%.0f", n / s; else print "n/a" }') samples/s  PyTorch ($cfg) $(stats $ps) s = $(awk -v n=$TN -v s="$pm" 'BEGIN{ if (s + 0 > 0) printf "%.0f", n / s; else print "n/a" }') samples/s  ratio $(stats $rs) (target >= 2.0)"
            # cores busy over the epoch (CPU time of all threads / wall time,
            # training steps and validation): at 1 thread both sides must
            # stay near 1.0 (torch_engine.set_threads keeps OpenBLAS there)
            dc='' pc=''
            for r in $(seq 1 "$TR"); do
                dc="$dc $(awk -v r=$r -v t=$t -v m=$m '$1 == r && $2 == t && $3 == m && $9 + $10 > 0 && $11 + 0 > 0 { printf "%.2f", $11 / ($9 + $10) }' "$W/train_ddts.txt")"
                pc="$pc $(sed -n "s/^$r train $m threads $t: epoch \([0-9.]*\) s, cpu \([0-9.]*\) s.*/\1 \2/p" "$W/train_torch.txt" 2>/dev/null | awk '$1 > 0 { printf "%.2f", $2 / $1 }')"
            done
            # shellcheck disable=SC2086
            echo "train $m, $t thread(s), cores busy over the epoch (CPU s / wall s): ddts $(stats $dc)  PyTorch $(stats $pc)"
        done
    done
    for t in 1 2; do
        for m in $TMODELS; do
            case $m in mlp | cnn) ;; *) continue ;; esac
            rs=
            for r in $(seq 1 "$TR"); do
                d=$(awk -v r=$r -v t=$t -v m=$m '$1 == r && $2 == t && $3 == m && $4 + 0 > 0 { print '"$TN"' / $4 }' "$W/train_ddts.txt")
                e=$(awk -v r=$r -v t=$t -v m=$m '$1 == r && $2 == t && $3 == m { print $4 }' "$W/train_engine.txt")
                rs="$rs $(ratio "$d" "$e")"
            done
            # shellcheck disable=SC2046,SC2086
            echo "train $m vs engine, $t thread(s): ddts train samples/s (whole epoch, validation included) / bench_engine samples/s (training steps only, the same model, one epoch of the same $TN samples) $(stats $rs)  (engine rounds $(stats $(awk -v t=$t -v m=$m '$2 == t && $3 == m { print $4 }' "$W/train_engine.txt")) samples/s; target >= 0.90)${QNOTE:-}"
            # the same with ddts train's training steps alone, and what its
            # validation pass cost per validated sample against a trained one
            rs='' vs=''
            for r in $(seq 1 "$TR"); do
                d=$(awk -v r=$r -v t=$t -v m=$m '$1 == r && $2 == t && $3 == m && $9 + 0 > 0 { print '"$TN"' / $9 }' "$W/train_ddts.txt")
                e=$(awk -v r=$r -v t=$t -v m=$m '$1 == r && $2 == t && $3 == m { print $4 }' "$W/train_engine.txt")
                rs="$rs $(ratio "$d" "$e")"
                vs="$vs $(awk -v r=$r -v t=$t -v m=$m '$1 == r && $2 == t && $3 == m && $9 + 0 > 0 && $10 != "n/a" { printf "%.2f", ($10 / 10000) / ($9 / '"$TN"') }' "$W/train_ddts.txt")"
            done
            # shellcheck disable=SC2086
            echo "train $m vs engine, $t thread(s), training steps only: $(stats $rs); ddts train's validation: $(stats $vs) training samples' time per validated sample (forward only)"
        done
    done
    # 2 threads over 1, per round (issue 16: MLP >= 1.2x, CNN >= 1.7x), beside
    # what this machine's two cores give a pure GEMM in the same round: the
    # sgemm 1024^3 reference's own 2-over-1, a ceiling for compute-bound work
    # (on this VM it has ranged from 1.2x to 2.2x between runs).
    for m in $TMODELS; do
        rs='' ss='' es='' gs=''
        for r in $(seq 1 "$TR"); do
            rs="$rs $(ratio "$(awk -v r=$r -v m=$m '$1 == r && $2 == 1 && $3 == m { print $4 }' "$W/train_ddts.txt")" \
                "$(awk -v r=$r -v m=$m '$1 == r && $2 == 2 && $3 == m { print $4 }' "$W/train_ddts.txt")")"
            ss="$ss $(ratio "$(awk -v r=$r -v m=$m '$1 == r && $2 == 1 && $3 == m { print $9 }' "$W/train_ddts.txt")" \
                "$(awk -v r=$r -v m=$m '$1 == r && $2 == 2 && $3 == m { print $9 }' "$W/train_ddts.txt")")"
            case $m in mlp | cnn) ;; *) continue ;; esac
            es="$es $(ratio "$(awk -v r=$r -v m=$m '$1 == r && $2 == 2 && $3 == m { print $4 }' "$W/train_engine.txt")" \
                "$(awk -v r=$r -v m=$m '$1 == r && $2 == 1 && $3 == m { print $4 }' "$W/train_engine.txt")")"
            gs="$gs $(ratio "$(sed -n "s/^$m: 2 thread(s): .* of sgemm 1024^3 \([0-9.]*\) GFLOP\/s.*/\1/p" "$W/engine-$r-$m.txt" 2>/dev/null)" \
                "$(sed -n "s/^$m: 1 thread(s): .* of sgemm 1024^3 \([0-9.]*\) GFLOP\/s.*/\1/p" "$W/engine-$r-$m.txt" 2>/dev/null)")"
        done
        # A per-round ratio divides by one 1-thread run, and a slow one (the
        # VM's speed drifts 10-25 % over minutes) can push it above 2.0, more
        # than two cores give: beside it, the median 2-thread epoch against
        # the fastest 1-thread one, which such noise can only lower.
        f1=$(awk -v m=$m '$2 == 1 && $3 == m && $4 + 0 > 0 { print $4 }' "$W/train_ddts.txt" | sort -g | head -1)
        # shellcheck disable=SC2086
        m2=$(med $(awk -v m=$m '$2 == 2 && $3 == m { print $4 }' "$W/train_ddts.txt"))
        # shellcheck disable=SC2086
        echo "train $m, 2 threads over 1 (per round): ddts train whole epoch $(stats $rs), its training steps $(stats $ss)${es:+; bench_engine $(stats $es); the sgemm 1024^3 reference $(stats $gs)}; the median 2-thread epoch over the fastest 1-thread one $(ratio "$f1" "$m2") (target: MLP >= 1.2, CNN >= 1.7)${QNOTE:-}"
    done
    # The sgemm reference of each round, next to the model measured after it
    # (bench_engine: sgemm 1024^3 at the thread count, then the epoch), and
    # ddts train's FLOP rate of that round's training steps against it.
    for r in $(seq 1 "$TR"); do
        for m in $TMODELS; do
            case $m in mlp | cnn) ;; *) continue ;; esac
            f=$(sed -n "s/^$m: training FLOPs per sample \([0-9]*\) .*/\1/p" "$W/engine-$r-$m.txt" 2>/dev/null)
            for t in 1 2; do
                ref=$(sed -n "s/^$m: $t thread(s): .* of sgemm 1024^3 \([0-9.]*\) GFLOP\/s.*/\1/p" "$W/engine-$r-$m.txt" 2>/dev/null)
                eg=$(sed -n "s/^$m: $t thread(s): \([0-9.]*\) GFLOP\/s.*/\1/p" "$W/engine-$r-$m.txt" 2>/dev/null)
                dg=$(awk -v r=$r -v t=$t -v m=$m -v f="$f" '$1 == r && $2 == t && $3 == m && $9 + 0 > 0 && f != "" { printf "%.1f", '"$TN"' / $9 * f / 1e9 }' "$W/train_ddts.txt")
                echo "train round $r $m, $t thread(s): sgemm 1024^3 ${ref:-n/a} GFLOP/s; engine ${eg:-n/a} GFLOP/s ($(ratio "$eg" "$ref") of sgemm); ddts train's training steps ${dg:-n/a} GFLOP/s ($(ratio "$dg" "$ref") of sgemm); ${f:-n/a} training FLOPs per sample from the layer shapes"
            done
        done
    done
    for t in 1 2; do
        for m in $TMODELS; do
            # shellcheck disable=SC2046
            dp=$(stats $(awk -v t=$t -v m=$m '$2 == t && $3 == m { print $7 }' "$W/train_ddts.txt"))
            # shellcheck disable=SC2046
            pp=$(stats $(sed -n "s/^[0-9]* train $m threads $t: .*predict samples\/s \([0-9.]*\).*/\1/p" "$W/train_torch.txt" 2>/dev/null))
            echo "predict $m, $t thread(s), 10000 samples at batch 128 (best of $PR per round): ddts $dp samples/s  PyTorch eval()+no_grad $pp samples/s  ratio $(ratio "${dp%% *}" "${pp%% *}") (target >= 2.0)"
        done
    done
    for m in $TMODELS; do
        # shellcheck disable=SC2046
        echo "start-up $m: ddts train start to the end of its first training step, data load excluded: $(stats $(awk -v m=$m '$3 == m { print $6 }' "$W/train_ddts.txt")) ms (target < 100 for the MLP); whole process wall $(stats $(awk -v m=$m '$2 == 1 && $3 == m { print $5 }' "$W/train_ddts.txt")) s at 1 thread"
    done
    echo "train validation accuracy after the epoch (round 1, 1 thread): $(awk '$1 == 1 && $2 == 1 { printf "%s %s  ", $3, $8 }' "$W/train_ddts.txt")| PyTorch: $(sed -n 's/^1 train \([a-z_]*\) threads 1: .*val_accuracy \([0-9.]*\).*/\1 \2/p' "$W/train_torch.txt" 2>/dev/null | tr '\n' ' ')"
;; esac

case " $CASES " in *" data "*)
    echo "== data (issue 5): load time, median of repeats; each load in its own process =="
    R=5; [ "$Q" = 1 ] && R=3
    GQ=; [ "$Q" = 1 ] && GQ=--quick
    $PY "$SRC/bench/data_peers.py" gen "$W/data" $GQ
    for f in data.npz data_z.npz data.csv data.xlsx; do
        [ -f "$W/data/$f" ] || { echo "data $f: not generated (openpyxl missing?)"; continue; }
        k=; case $f in *.npz) k="--key x" ;; esac
        dl=$("$B/bench_data" "$W/data/$f" $k --repeats $R)
        pl=$($PY "$SRC/bench/data_peers.py" load "$W/data/$f" $k --repeats $R)
        ds=$(echo "$dl" | sed -n 's/.*median \([0-9.]*\) s.*/\1/p')
        ps=$(echo "$pl" | sed -n 's/.*median \([0-9.]*\) s.*/\1/p')
        dr=$(echo "$dl" | sed -n 's/.*peak RSS \([0-9.]*\) MiB.*/\1/p')
        pr=$(echo "$pl" | sed -n 's/.*peak RSS \([0-9.]*\) MiB.*/\1/p')
        pb=$(echo "$pl" | sed -n 's/.*baseline \([0-9.]*\) MiB.*/\1/p')
        case $f in *.npz) peer="np.load" ;; *.csv) peer="pandas.read_csv" ;; *) peer="pandas.read_excel" ;; esac
        echo "data $f ($(($(wc -c <"$W/data/$f") / 1000000)) MB): ddts ${ds}s  $peer ${ps}s  speed ratio $(ratio "$ps" "$ds")x; peak RSS ddts ${dr} MiB, peer ${pr} MiB (python alone ${pb})"
    done
;; esac

case " $CASES " in *" transfer "*)
    MB=${BENCH_MB:-500}; [ "$Q" = 1 ] && MB=50
    echo "== transfer (issue 6): a ${MB} MB shard over loopback, encrypted ddts vs plain TCP =="
    F="$W/shard.bin"
    line=$("$B/bench_transfer" --size "$MB" --repeats 3 --file "$F" 2>/dev/null)
    echo "$line"
    if [ ! -s "$F" ]; then
        echo "(bench_transfer failed or is not built: no shard file, socat skipped)"
    elif command -v socat >/dev/null 2>&1; then
        port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        rates=
        for i in 1 2 3; do
            socat -u TCP-LISTEN:$port,reuseaddr,bind=127.0.0.1 OPEN:/dev/null &
            lp=$!
            sleep 0.3
            t0=$(now)
            socat -u OPEN:"$F" TCP:127.0.0.1:$port
            wait $lp
            t1=$(now)
            rates="$rates $(awk -v a="$t0" -v b="$t1" -v m="$MB" 'BEGIN{printf "%.0f", m / (b - a)}')"
        done
        s=$(echo $rates | tr ' ' '\n' | sort -n | sed -n 2p)
        d=$(echo "$line" | sed -n 's/.*ddts encrypted \([0-9.]*\) MB.*/\1/p')
        echo "transfer ${MB} MB: ddts encrypted ${d:-n/a} MB/s  socat (cat over TCP) ${s} MB/s  ratio $(ratio "$d" "$s") (target >= 0.70)"
    else
        echo "(socat not installed: only the in-process plain TCP copy is the peer)"
    fi
;; esac

case " $CASES " in *" dist "*)
    EP=4; N=${BENCH_SAMPLES:-60000}
    [ "$Q" = 1 ] && { EP=1; N=6000; }
    echo "== distributed (issue 7): Fashion-MNIST, $EP epochs, --sync epoch, --threads 1 per client =="
    printf 'bench passphrase\n' >"$W/pass"
    chmod 600 "$W/pass"
    for m in mlp cnn; do
        "$B/ddts" model new "$SRC/examples/fashion_$m.json" -o "$W/$m.h5" >/dev/null 2>&1 || { echo "model new $m failed"; continue; }
        for k in 1 2; do
            port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
            d="$W/dist-$m-$k"
            mkdir -p "$d"
            t0=$(now)
            "$B/ddts" server --host 127.0.0.1 --port "$port" --passphrase-file "$W/pass" \
                --model "$W/$m.h5" --clients $k --epochs $EP --batch-size 32 --data keras \
                --keras-dataset fashion_mnist --samples $N --normalizer simple --sync epoch \
                --seed 5 --threads 1 --workdir "$d/server" --name job --client-timeout 600 \
                >"$d/server.out" 2>"$d/server.err" &
            sp=$!
            sleep 0.5
            i=1
            while [ $i -le $k ]; do
                "$B/ddts" client --server "127.0.0.1:$port" --passphrase-file "$W/pass" \
                    --workdir "$d/c$i" --name "c$i" --threads 1 >"$d/c$i.out" 2>"$d/c$i.err" &
                i=$((i + 1))
            done
            wait
            t1=$(now)
            acc=$(sed -n 's/^test accuracy: //p' "$d/server.out")
            eval "T_$k=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b - a}')"
            eval "A_$k=\${acc:-n/a}"
        done
        echo "dist $m $EP epochs on $N samples: 1 client ${T_1}s acc ${A_1}; 2 clients ${T_2}s acc ${A_2}; speed-up $(ratio "$T_1" "$T_2")x (target >= 1.8)"
        eval "DT1_$m=\$T_1 DT2_$m=\$T_2 DA1_$m=\$A_1 DA2_$m=\$A_2"
    done
    # The peer: PyTorch DDP (gloo), 1 and 2 processes of 1 thread, the same
    # task (bench/torch_ddp.py). DDP all-reduces gradients every step; ddts
    # --sync epoch averages weights once per epoch (docs/benchmarks.md).
    if [ $HAVE_TORCH = 1 ]; then
        $PY "$SRC/bench/torch_ddp.py" --epochs $EP --samples $N --batch 32 --seed 5 \
            >"$W/torch_ddp.txt" 2>"$W/torch_ddp.err" ||
            echo "torch_ddp failed: $(tail -3 "$W/torch_ddp.err")"
        head -1 "$W/torch_ddp.txt"
    else
        echo "(PyTorch DDP peer skipped: python3-torch not installed, Debian python3-torch)"
    fi
    # ddp_field MODEL WORLD FIELD: wall | train | acc from torch_ddp.txt
    ddp_field() {
        [ -f "$W/torch_ddp.txt" ] || return 0
        case $3 in
        wall) sed -n "s/^ddp $1 world $2: wall \([0-9.]*\) s.*/\1/p" "$W/torch_ddp.txt" ;;
        train) sed -n "s/^ddp $1 world $2: .*train \([0-9.]*\) s.*/\1/p" "$W/torch_ddp.txt" ;;
        acc) sed -n "s/^ddp $1 world $2: .*accuracy \([0-9.]*\).*/\1/p" "$W/torch_ddp.txt" ;;
        esac
    }
    echo "dist table: wall s for 1 | 2 workers, speed-up 1->2, test accuracy 1 | 2 (PyTorch DDP train-loop s in brackets)"
    for m in mlp cnn; do
        eval "t1=\${DT1_$m:-} t2=\${DT2_$m:-} a1=\${DA1_$m:-} a2=\${DA2_$m:-}"
        echo "dist $m ddts --sync epoch:  ${t1:-n/a} | ${t2:-n/a} s  speed-up $(ratio "$t1" "$t2")x  accuracy ${a1:-n/a} | ${a2:-n/a}"
        w1=$(ddp_field $m 1 wall) w2=$(ddp_field $m 2 wall)
        r1=$(ddp_field $m 1 train) r2=$(ddp_field $m 2 train)
        echo "dist $m PyTorch DDP gloo:   ${w1:-n/a} | ${w2:-n/a} s ([${r1:-n/a} | ${r2:-n/a}])  speed-up $(ratio "$w1" "$w2")x ([$(ratio "$r1" "$r2")x])  accuracy $(ddp_field $m 1 acc) | $(ddp_field $m 2 acc)"
    done
;; esac
case " $CASES " in *" mpi "*)
    # ddts train --distributed mpi (issue 17): 1 vs 2 ranks of 1 thread, MLP and
    # CNN of the engine case, --sync step (gradients every step: 2 ranks at
    # batch 32 train like one process at batch 64), the same with the exchange
    # in buckets overlapped with the backward pass (--bucket-mb 0.1: two per
    # step for these 0.9 MB models, docs/mpi.md) and --sync epoch; each rank
    # validates its slice of the 10000 test samples after every epoch. Then
    # the peer, PyTorch DDP (gloo, bench/torch_ddp.py --validate epoch): the
    # same models, samples, epochs, batch per process and per-epoch
    # validation split over the processes, 1 and 2 processes, against ddts
    # --sync step (both all-reduce gradients every step) in samples/s of the
    # training loop with its validation passes. Then the exchanges alone, MPI
    # against the server/client path, per model size.
    EP=2; N=${BENCH_SAMPLES:-60000}
    [ "$Q" = 1 ] && { EP=1; N=6000; }
    if [ ! -x "$B/ddts-mpi" ] || ! command -v mpirun >/dev/null 2>&1; then
        echo "== mpi: skipped (ddts-mpi or mpirun missing: make deps, then a build with OpenMPI) =="
    else
        echo "== mpi (issue 17): Fashion-MNIST, $EP epochs on $N samples, batch 32 per rank, --threads 1 per rank =="
        export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
        export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
        # field FILE NAME: a "NAME: value" line of ddts train's output
        field() { sed -n "s/^$2: //p" "$1" 2>/dev/null; }
        for m in mlp cnn; do
            [ -s "$W/$m.h5" ] || "$B/ddts" model new "$SRC/examples/fashion_$m.json" -o "$W/$m.h5" >/dev/null 2>&1 ||
                { echo "model new $m failed"; continue; }
            for sync in step step-buckets epoch; do
                bucket=
                [ "$sync" = step-buckets ] && bucket="--bucket-mb 0.1"
                for k in 1 2; do
                    o="$W/mpi-$m-$sync-$k"
                    # Each rank on a core of its own when there are enough
                    # (OpenMPI's default for 2 ranks; docs/mpi.md): unbound,
                    # a rank that busy-polls in the allreduce can share a core
                    # with the rank it waits for. More ranks than cores: none.
                    bind=core
                    [ "$k" -gt "$(nproc)" ] && bind=none
                    t0=$(now)
                    mpirun --oversubscribe --bind-to $bind -np $k "$B/ddts" train --distributed mpi \
                        --model "$W/$m.h5" --epochs $EP --batch-size 32 --data keras \
                        --keras-dataset fashion_mnist --samples $N --normalizer simple --sync "${sync%-buckets}" $bucket \
                        --seed 5 --threads 1 --out "$o" >"$o.out" 2>"$o.err" ||
                        echo "mpi $m $sync $k ranks failed: $(tail -2 "$o.err")"
                    t1=$(now)
                    eval "MW_$k=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b - a}')"
                    eval "MT_$k=$(field "$o.out" seconds) MA_$k=$(field "$o.out" val_accuracy)"
                    eval "MX_$k=$(field "$o.out" exchanges) MB_$k=$(field "$o.out" exchange_bytes_per_rank) MS_$k=$(field "$o.out" exchange_seconds)"
                    # each rank's seconds inside the exchanges (the rank that waits least is the slowest)
                    eval "MR_$k='$(field "$o.out" exchange_seconds_per_rank)'"
                    [ "$sync" = step ] && eval "MSPS_${m}_$k=$(field "$o.out" samples_per_second)"
                done
                per_x=$(awk -v b="${MB_2:-}" -v x="${MX_2:-}" -v s="${MS_2:-}" 'BEGIN{ if (x + 0 > 0) printf "%.3f MB, %.3f ms", b / x / 1e6, s / x * 1e3; else print "n/a" }')
                echo "mpi $m --sync ${sync%-buckets}${bucket:+ $bucket}: 1 rank ${MW_1}s (train ${MT_1:-n/a}s) acc ${MA_1:-n/a}; 2 ranks ${MW_2}s (train ${MT_2:-n/a}s) acc ${MA_2:-n/a}; speed-up $(ratio "$MT_1" "$MT_2")x train, $(ratio "$MW_1" "$MW_2")x wall (target >= 1.8, accuracy within 1 point); ${MX_2:-n/a} exchanges, per exchange ${per_x} (incl. waiting); seconds in exchanges per rank: ${MR_2:-n/a}"
            done
        done
        if [ $HAVE_TORCH = 1 ]; then
            $PY "$SRC/bench/torch_ddp.py" --models mlp,cnn --worlds 1,2 --epochs $EP --samples $N \
                --batch 32 --seed 5 --validate epoch >"$W/mpi_ddp.txt" 2>"$W/mpi_ddp.err" ||
                echo "torch_ddp failed: $(tail -3 "$W/mpi_ddp.err")"
            head -1 "$W/mpi_ddp.txt"
            for m in mlp cnn; do
                for k in 1 2; do
                    eval "d=\${MSPS_${m}_$k:-}"
                    p=$(sed -n "s/^ddp $m world $k: .*samples\/s \([0-9.]*\),.*/\1/p" "$W/mpi_ddp.txt")
                    pa=$(sed -n "s/^ddp $m world $k: .*accuracy \([0-9.]*\).*/\1/p" "$W/mpi_ddp.txt")
                    echo "mpi vs DDP $m $k process(es): ddts --sync step ${d:-n/a} samples/s, PyTorch DDP gloo ${p:-n/a} samples/s (val accuracy ${pa:-n/a}); ddts/DDP $(ratio "$d" "$p")x (target >= 1.5)"
                done
            done
        else
            echo "(PyTorch DDP peer skipped: python3-torch not installed, Debian python3-torch)"
        fi
        # The exchanges alone: MPI_Allreduce (bench_mpi) and a server round
        # (bench_sync: 2 clients on loopback, encrypted) for the same model sizes.
        SIZES="0.2 1 5 25"; R=20
        [ "$Q" = 1 ] && { SIZES="0.2 1"; R=5; }
        if [ -x "$B/bench_mpi" ]; then
            mpirun --oversubscribe --bind-to none -np 2 "$B/bench_mpi" --sizes "$(echo $SIZES | tr ' ' ',')" --repeats $R 2>&1
        fi
        for mb in $SIZES; do
            fl=$(awk -v m="$mb" 'BEGIN{printf "%d", m * 1e6 / 4}')
            "$B/bench_sync" 2 $R "$fl" 2>&1 | sed "s/^/server path, $mb MB model: /"
            echo "server path, $mb MB model: each client sends and receives $(awk -v m="$mb" 'BEGIN{printf "%.2f", m}') MB per round; the server moves $(awk -v m="$mb" 'BEGIN{printf "%.2f", 4 * m}') MB (2 clients)"
        done
    fi
;; esac
case " $CASES " in *" examples "*)
    # Issue 20: a depthwise-separable CNN and a Transformer encoder (and issue
    # 15's bidirectional GRU over the same token sequences), on the
    # product path: `ddts train` (samples/s of fit time, validation passes
    # included, from summary.json) against bench/torch_examples.py doing the
    # same epochs on the same data (its first epoch a warm-up), 1 and 2
    # threads, ddts and PyTorch alternating, median of 3 rounds.
    echo "== examples (issues 20, 15): ddts train vs PyTorch, same data, batch 32, Adam, validation 30 % =="
    EN=1200; EE=2; RR=3
    [ "$Q" = 1 ] && { EN=300; EE=1; RR=1; }
    $PY -c "import sys; sys.path.insert(0, '$SRC/tests/integration'); import test_examples_mobile as T
T.cifar_like('$W/ex_cifar_mobilenet', $EN); T.imdb_like('$W/ex_imdb_transformer', $EN)" &&
        ln -s "$W/ex_imdb_transformer" "$W/ex_text_gru" ||
        echo "examples: data generation failed"
    for m in cifar_mobilenet imdb_transformer text_gru; do
        loss=sparse_categorical_crossentropy
        [ $m != cifar_mobilenet ] && loss=binary_crossentropy
        "$B/ddts" model new "$SRC/examples/$m.json" --loss $loss --seed 3 -o "$W/$m.h5" >/dev/null ||
            echo "examples: ddts model new $m failed"
        for th in 1 2; do
            D=; P=; RS=
            for r in $(seq 1 $RR); do
                o="$W/ex_$m.$th.$r"
                OMP_WAIT_POLICY=passive "$B/ddts" train --model "$W/$m.h5" --dataset "$W/ex_$m" \
                    --epochs $EE --batch-size 32 --threads $th --seed 1 --metrics accuracy \
                    --out "$o" >"$o.out" 2>&1 || echo "examples: ddts train $m failed: $(tail -2 "$o.out")"
                d=$(sed -n 's/.*"samples_per_second": *\([0-9.]*\).*/\1/p' "$o/summary.json" 2>/dev/null)
                p=
                if [ $HAVE_TORCH = 1 ]; then
                    # The peer's best configuration here: torch's own threads only
                    # (OpenBLAS at 1 thread, passive OpenMP waits; spinning
                    # threads on 2 cores made 2 threads 30x slower).
                    p=$(OMP_WAIT_POLICY=passive OPENBLAS_NUM_THREADS=1 $PY "$SRC/bench/torch_examples.py" \
                        "$W/ex_$m" $m $th $EE 2>&1 | sed -n 's/^samples\/s //p')
                fi
                D="$D $d"; P="$P $p"; RS="$RS $(ratio "$d" "$p")"
            done
            echo "examples $m samples/s, $th thread(s): ddts $(med $D)  PyTorch $(med $P)  ratio $(med $RS) (rounds:$RS; target >= 1.5)"
        done
    done
;; esac
case " $CASES " in *" recurrent "*)
    # Issue 15: LSTM and GRU training on the product path, `ddts train` of
    # examples/fashion_lstm.json and examples/fashion_gru.json (each image's
    # 28 rows as 28 steps of 28 features, LSTM(128) or GRU(128) -> Dense(10)),
    # 1 epoch at batch 64 with its validation pass over the 10000 test
    # samples, --normalizer simple, Adam, against bench/torch_train.py doing
    # the same epoch with nn.LSTM / nn.GRU (same sizes, Keras initialisation)
    # in its best thread configuration (peer_config); 1 and 2 threads, ddts
    # and PyTorch alternating model by model, rounds; each run's peak RSS.
    # Then the accuracy peer: fashion_lstm for 3 epochs at batch 64 on all
    # 60000 training samples, test accuracy, seeds 1-3 on each side (seed s:
    # the initial weights and the shuffling order), 2 threads (1 when quick).
    RN=${BENCH_RNN_SAMPLES:-20000}; RR=${BENCH_RNN_ROUNDS:-3}; PN=2000; AN=60000; AS=${BENCH_RNN_SEEDS:-3}; AT=2
    # quick (about 2 minutes on a quiet 2-core machine): one round on 2000
    # samples, the peer not searched, one accuracy seed on 6000 samples at 1
    # thread (a smoke run: not the target's figure)
    RNOTE=
    [ "$Q" = 1 ] && { RN=2000; RR=1; PN=0; AN=6000; AS=1; AT=1
        RNOTE=" (quick: a 2000-sample epoch against 10000 validated, a smoke run)"; }
    echo "== recurrent (issue 15): ddts train CLI vs PyTorch nn.LSTM / nn.GRU, Fashion-MNIST rows as sequences, $RN training samples, 1 epoch at batch 64 + validation on 10000, --normalizer simple, Adam; $RR round(s) alternating =="
    for m in lstm gru; do
        "$B/ddts" model new "$SRC/examples/fashion_$m.json" -o "$W/r_$m.h5" >/dev/null 2>&1 ||
            echo "recurrent: ddts model new fashion_$m failed"
    done
    peer_config recurrent lstm,gru $PN --batch 64 --predict-passes 0
    for r in $(seq 1 "$RR"); do
        for t in 1 2; do
            eval "cfg=\$TCFG_$t"
            for m in lstm gru; do
                o="$W/rnn-$m-$t"
                rm -rf "$o"
                peak_rss "$o.rss" "$B/ddts" train --model "$W/r_$m.h5" --data keras --keras-dataset fashion_mnist \
                    --samples $RN --epochs 1 --batch-size 64 --normalizer simple --seed 1 \
                    --threads $t --out "$o" >"$o.out" 2>"$o.err" || echo "recurrent: ddts train $m failed: $(tail -2 "$o.err")"
                ep=$(tfield "$o.out" seconds)
                echo "$r $t $m ${ep:-n/a} $(cat "$o.rss" 2>/dev/null || echo n/a) $(tfield "$o.out" val_accuracy)" >>"$W/rnn_ddts.txt"
                [ $HAVE_TORCH = 1 ] || continue
                # shellcheck disable=SC2046 # cfg_env: no word for the default
                peak_rss "$o.trss" env $(cfg_env "$cfg") $PY "$SRC/bench/torch_train.py" --models $m --threads $t \
                    --samples $RN --batch 64 --predict-passes 0 >"$o.torch" 2>"$o.terr" ||
                    echo "recurrent: torch_train $m failed: $(tail -2 "$o.terr")"
                ps=$(sed -n "s/^train $m threads $t: epoch \([0-9.]*\) s.*/\1/p" "$o.torch")
                echo "$r $t $m ${ps:-n/a} $(cat "$o.trss" 2>/dev/null || echo n/a) $(sed -n 's/^peak RSS: .*(after the imports \([0-9.]*\) MiB.*/\1/p' "$o.torch")" >>"$W/rnn_torch.txt"
            done
        done
    done
    # col FILE T M K: column K of the rows of thread count T and model M
    col() { awk -v t="$2" -v m="$3" -v k="$4" '$2 == t && $3 == m { print $k }' "$1" 2>/dev/null; }
    echo "recurrent table: seconds per epoch incl. validation (median (min-max) over rounds), samples/s = $RN / that, ratio = PyTorch s / ddts s"
    for t in 1 2; do
        eval "cfg=\$TCFG_$t"
        for m in lstm gru; do
            ds=$(col "$W/rnn_ddts.txt" $t $m 4) ps=$(col "$W/rnn_torch.txt" $t $m 4) rs=
            for r in $(seq 1 "$RR"); do
                d=$(awk -v r=$r -v t=$t -v m=$m '$1 == r && $2 == t && $3 == m { print $4 }' "$W/rnn_ddts.txt")
                p=$(awk -v r=$r -v t=$t -v m=$m '$1 == r && $2 == t && $3 == m { print $4 }' "$W/rnn_torch.txt" 2>/dev/null)
                rs="$rs $(ratio "$p" "$d")"
            done
            # shellcheck disable=SC2086
            dm=$(med $ds) pm=$(med $ps)
            tg="target >= 1.5"; [ $t = 1 ] || tg="reported; the target is at 1 thread"
            # shellcheck disable=SC2086
            echo "recurrent $m, $t thread(s): ddts $(stats $ds) s = $(awk -v n=$RN -v s="$dm" 'BEGIN{ if (s + 0 > 0) printf "%.0f", n / s; else print "n/a" }') samples/s  PyTorch ($cfg) $(stats $ps) s = $(awk -v n=$RN -v s="$pm" 'BEGIN{ if (s + 0 > 0) printf "%.0f", n / s; else print "n/a" }') samples/s  ratio $(stats $rs) ($tg)${RNOTE}"
        done
    done
    for t in 1 2; do
        for m in lstm gru; do
            # shellcheck disable=SC2046
            dr=$(med $(col "$W/rnn_ddts.txt" $t $m 5)) pr=$(med $(col "$W/rnn_torch.txt" $t $m 5))
            # shellcheck disable=SC2046
            echo "recurrent $m peak RSS MiB, $t thread(s): ddts $(stats $(col "$W/rnn_ddts.txt" $t $m 5))  PyTorch $(stats $(col "$W/rnn_torch.txt" $t $m 5)) (of which the interpreter and torch after the imports $(stats $(col "$W/rnn_torch.txt" $t $m 6)))  ratio ddts/PyTorch $(ratio "$dr" "$pr") (target <= 0.50)"
        done
    done
    # The accuracy peer: ddts' initial weights from `ddts model new --seed s`,
    # its shuffling from `ddts train --seed s`; PyTorch's both from seed s.
    eval "cfg=\$TCFG_$AT"
    DA= PA=
    for s in $(seq 1 "$AS"); do
        o="$W/rnn-acc-$s"
        "$B/ddts" model new "$SRC/examples/fashion_lstm.json" --seed $s -o "$o.h5" >/dev/null 2>&1 ||
            echo "recurrent: ddts model new fashion_lstm --seed $s failed"
        "$B/ddts" train --model "$o.h5" --data keras --keras-dataset fashion_mnist --samples $AN \
            --epochs 3 --batch-size 64 --normalizer simple --seed $s --threads $AT --out "$o" \
            >"$o.out" 2>"$o.err" || echo "recurrent: ddts train lstm seed $s failed: $(tail -2 "$o.err")"
        d=$(tfield "$o.out" val_accuracy)
        DA="$DA ${d:-n/a}"
        if [ $HAVE_TORCH = 1 ]; then
            # shellcheck disable=SC2046 # cfg_env: no word for the default
            p=$(env $(cfg_env "$cfg") $PY "$SRC/bench/torch_train.py" --models lstm --threads $AT --samples $AN --epochs 3 \
                --batch 64 --seed $s --predict-passes 0 2>"$o.terr" | sed -n 's/^train lstm threads [12]: .*val_accuracy \([0-9.]*\).*/\1/p')
            [ -n "$p" ] || echo "recurrent: torch_train lstm seed $s failed: $(tail -2 "$o.terr")"
            PA="$PA ${p:-n/a}"
        fi
    done
    # shellcheck disable=SC2086
    dm=$(med $DA) pm=$(med $PA)
    # shellcheck disable=SC2086
    echo "recurrent lstm test accuracy after 3 epochs at batch 64 ($AN training samples, $AT thread(s); median (min-max) of seeds 1-$AS): ddts $(stats $DA)  PyTorch ($cfg) $(stats $PA)  difference $(awk -v a="$dm" -v b="$pm" 'BEGIN{ if (a == "n/a" || b == "n/a" || a == "" || b == "") print "n/a"; else printf "%+.4f", a - b }') (targets: ddts >= 0.85 with 60000 samples; PyTorch within 0.01)${RNOTE:+ (quick: 6000 samples, one seed)}"
    echo "  per seed: ddts$DA  PyTorch${PA:- n/a}"
;; esac
echo "load at the end:$(uptime | sed 's/.*load average://')"
