#!/bin/bash
# ddts demo end to end (on a part of Fashion-MNIST to stay quick): a server and
# two clients as real processes, results collected, the final accuracy printed.
set -u
. "$DDTS_SOURCE_DIR/tests/integration/lib.sh"
run_expect 0 "$DDTS" demo --workdir "$WORK/demo" --samples 6000 --epochs 2
cat "$OUT"
grep -q 'Final test accuracy of the global model: 0\.[6-9]' "$OUT" || fail "no final accuracy >= 0.6 printed"
for f in server/demo/global/model.h5 server/demo/summary.json server/demo/report.png \
    server/demo/clients/client-1/history.csv server/demo/clients/client-2/model.h5; do
    [ -s "$WORK/demo/$f" ] || fail "demo: $f missing"
done
finish
