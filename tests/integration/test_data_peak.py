#!/usr/bin/python3
"""Peak memory of a folder load (issue 5: peak <= 1.2x the loaded array plus
fixed buffers): X/ holds four .npy files written by numpy (one big endian,
one Fortran order); a child process loads the folder through libddts.so
(ctypes) and reports how far its peak RSS rose. The result, written back with
ddts_npy_write, must equal numpy's concatenation.

Run by CTest with DDTS=path/to/ddts (libddts.so sits beside it).
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

DDTS = os.environ.get("DDTS", "build/ddts")
LIB = os.path.join(os.path.dirname(os.path.abspath(DDTS)), "libddts.so")

# VmHWM (this process's peak RSS in kB), not getrusage: ru_maxrss survives
# exec, so a child would report its parent's peak.
CHILD = r"""
import ctypes, sys
def hwm():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
lib = ctypes.CDLL(sys.argv[1])
err = ctypes.create_string_buffer(16384)
out = ctypes.c_void_p()
base = hwm()
st = lib.ddts_data_load_dir(sys.argv[2].encode(), ctypes.byref(out), err)
peak = hwm()
if st != 0:
    sys.exit("load_dir failed: status %d" % st)
if lib.ddts_npy_write(sys.argv[3].encode(), out, err) != 0:
    sys.exit("npy_write failed")
lib.ddts_array_destroy(out)
print((peak - base) * 1024)
"""


def main():
    if not os.path.exists(LIB):
        print("SKIP: %s not built" % LIB)
        return 0
    work = tempfile.mkdtemp(prefix="ddts-test_data_peak-")
    try:
        xd = os.path.join(work, "X")
        os.makedirs(xd)
        rng = np.random.default_rng(5)
        parts = [rng.random((3000, 784), dtype=np.float32) for _ in range(4)]
        np.save(os.path.join(xd, "a.npy"), parts[0])
        np.save(os.path.join(xd, "b.npy"), parts[1].astype(">f4"))
        np.save(os.path.join(xd, "c.npy"), np.asfortranarray(parts[2]))
        np.save(os.path.join(xd, "d.npy"), parts[3])
        want = np.concatenate(parts)
        outp = os.path.join(work, "out.npy")
        r = subprocess.run([sys.executable, "-c", CHILD, LIB, xd, outp],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            print("FAIL: child: %s %s" % (r.stdout, r.stderr))
            return 1
        rise = int(r.stdout.strip())
        got = np.load(outp)
        if got.dtype != np.float32 or not np.array_equal(got, want):
            print("FAIL: the folder's array differs from numpy's concatenation")
            return 1
        # Fixed buffers: the Fortran file's one scratch copy (9.4 MB) and
        # allocator slack; the array is 37.6 MB.
        limit = 1.2 * want.nbytes + parts[2].nbytes + (4 << 20)
        print("array %.1f MB, peak rose %.1f MB (limit %.1f MB)"
              % (want.nbytes / 1e6, rise / 1e6, limit / 1e6))
        if rise > limit:
            print("FAIL: peak above the limit")
            return 1
        print("PASS")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
