#!/bin/bash
# make install's layout: the program, both libraries, headers, the pkg-config
# file and the man page; a program built against the installed library runs.
set -u
. "$DDTS_SOURCE_DIR/tests/integration/lib.sh"
BUILD_DIR=$(dirname "$DDTS")
run_expect 0 cmake --install "$BUILD_DIR" --prefix "$WORK/inst"
for f in bin/ddts lib/libddts.a lib/libddts.so include/ddts/ddts.h lib/pkgconfig/ddts.pc \
    share/man/man1/ddts.1; do
    [ -e "$WORK/inst/$f" ] || fail "install: $f missing"
done
run_expect 0 "$WORK/inst/bin/ddts" --version

# The shared library exports exactly the public API: every function that the
# installed headers declare (DDTS_API), and nothing else, no internal ddts__
# function in particular (it is built with -fvisibility=hidden).
nm -D --defined-only "$WORK/inst/lib/libddts.so" | awk '$2 ~ /^[TWDBR]$/ {print $3}' | sort \
    >"$WORK/exported" || fail "nm failed"
[ -s "$WORK/exported" ] || fail "libddts.so exports nothing"
if grep '^ddts__' "$WORK/exported" >"$WORK/internal"; then
    fail "libddts.so exports internal symbols: $(tr '\n' ' ' <"$WORK/internal")"
fi
python3 "$DDTS_SOURCE_DIR/tests/integration/public_api.py" "$WORK/inst/include" \
    >"$WORK/declared" || fail "could not list the public declarations"
[ "$(wc -l <"$WORK/declared")" -gt 100 ] || fail "public_api.py found too few declarations"
comm -23 "$WORK/declared" "$WORK/exported" >"$WORK/missing"
[ -s "$WORK/missing" ] && fail "declared in include/ddts but not exported: $(tr '\n' ' ' <"$WORK/missing")"
comm -13 "$WORK/declared" "$WORK/exported" >"$WORK/extra"
[ -s "$WORK/extra" ] && fail "exported but declared in no public header: $(tr '\n' ' ' <"$WORK/extra")"
# The CLI needs nothing beyond that API: the same objects linked against
# libddts.so (ddts_shared_cli, built next to ddts) link and run.
run_expect 0 "$BUILD_DIR/ddts_shared_cli" --version
grep -q '^ddts ' "$OUT" || fail "ddts_shared_cli --version: $(cat "$OUT")"
ldd "$BUILD_DIR/ddts_shared_cli" | grep -q 'libddts\.so' || fail "ddts_shared_cli is not linked dynamically"
cat >"$WORK/use.c" <<'CEOF'
#include <ddts/ddts.h>
#include <stdio.h>
int main(void)
{
    struct ddts_error err;
    struct ddts_array *a = NULL;
    int64_t shape[2] = {2, 3};
    if (ddts_array_create(DDTS_F32, 2, shape, &a, &err) != DDTS_OK)
        return 1;
    printf("%zu %s\n", ddts_array_count(a), ddts_status_str(DDTS_EAUTH));
    ddts_array_destroy(a);
    return 0;
}
CEOF
export PKG_CONFIG_PATH="$WORK/inst/lib/pkgconfig"
run_expect 0 sh -c "cc -std=c11 -o '$WORK/use' '$WORK/use.c' \$(pkg-config --cflags ddts) \
    -L'$WORK/inst/lib' -Wl,-rpath,'$WORK/inst/lib' -lddts"
run_expect 0 "$WORK/use"
grep -q '^6 authentication failed$' "$OUT" || fail "installed library: $(cat "$OUT")"
if command -v man >/dev/null; then run_expect 0 man -l "$WORK/inst/share/man/man1/ddts.1"; fi
finish
