#!/bin/bash
# ddts demo end to end (on a part of Fashion-MNIST to stay quick): a server and
# two clients as real processes, results collected, the final accuracy printed.
# Run twice in the same folder (README's `make demo` run again): the second run
# is a fresh job, not the finished one (issue 13: it found job 'demo' complete,
# exited, and the clients got "Connection refused"). A folder of other files is
# never emptied.
set -u
. "$DDTS_SOURCE_DIR/tests/integration/lib.sh"
for run in 1 2; do
    run_expect 0 "$DDTS" demo --workdir "$WORK/demo" --samples 6000 --epochs 2
    cat "$OUT"
    grep -q 'Final test accuracy of the global model: 0\.[6-9]' "$OUT" ||
        fail "run $run: no final accuracy >= 0.6 printed"
    for f in server/demo/global/model.h5 server/demo/summary.json server/demo/report.png \
        server/demo/clients/client-1/history.csv server/demo/clients/client-2/model.h5; do
        [ -s "$WORK/demo/$f" ] || fail "demo run $run: $f missing"
    done
    # Two epochs of this run only: nothing kept from the first run.
    rows=$(($(wc -l < "$WORK/demo/server/demo/clients/client-1/history.csv") - 1))
    [ "$rows" = 2 ] || fail "demo run $run: client-1's history.csv has $rows epochs (want 2)"
done
mkdir -p "$WORK/other"
echo keep > "$WORK/other/notes.txt"
run_expect 1 "$DDTS" demo --workdir "$WORK/other" --samples 600 --epochs 1
grep -q "holds files that an earlier demo did not make" "$ERR" || fail "a foreign folder not refused"
[ -f "$WORK/other/notes.txt" ] || fail "a foreign folder was emptied"
finish
