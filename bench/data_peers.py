#!/usr/bin/python3
"""Peers of bench_data (issue 5): numpy's np.load and pandas' read_csv / read_excel.

  data_peers.py gen DIR [--quick]     writes the benchmark files into DIR
  data_peers.py load FILE [--key K] [--repeats N]
                                      loads FILE like ddts would, prints one line:
  peer FILE: median S s over N, X MB/s, peak RSS R MiB (python baseline B MiB)

Files (same seed every run):
  data.npz     stored npz, x (20000, 784) float32 + y (20000,) uint8  (~63 MB)
  data_z.npz   the same, np.savez_compressed (deflate)
  data.csv     numeric CSV, 10 columns, header row, ~20 MB (np.savetxt %.6g)
  data.xlsx    20000 rows x 10 columns of numbers, header row (openpyxl)
--quick makes every file about 10x smaller.
"""
import os
import resource
import sys
import time

import numpy as np


def gen(d, quick):
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(12345)
    n = 2000 if quick else 20000
    x = rng.random((n, 784), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.uint8)
    np.savez(os.path.join(d, "data.npz"), x=x, y=y)
    np.savez_compressed(os.path.join(d, "data_z.npz"), x=(x * 255).astype(np.uint8), y=y)
    rows = 24000 if quick else 240000
    c = rng.normal(size=(rows, 10)) * 1000.0
    np.savetxt(os.path.join(d, "data.csv"), c, fmt="%.6g", delimiter=",",
               header=",".join("c%d" % i for i in range(10)), comments="")
    try:
        import openpyxl
    except ImportError:
        print("openpyxl not installed: no xlsx file", file=sys.stderr)
        return
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("data")
    ws.append(["c%d" % i for i in range(10)])
    for row in c[:(2000 if quick else 20000)]:
        ws.append([float(v) for v in row])
    wb.save(os.path.join(d, "data.xlsx"))


def load(path, key, repeats):
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if path.endswith(".npz"):
        def f():
            with np.load(path) as z:
                return z[key] if key else z[z.files[0]]
    elif path.endswith(".csv"):
        import pandas as pd

        def f():
            return pd.read_csv(path).to_numpy(dtype=np.float64)
    elif path.endswith(".xlsx"):
        import pandas as pd

        def f():
            return pd.read_excel(path, engine="openpyxl").to_numpy(dtype=np.float64)
    else:
        raise SystemExit("unknown format: " + path)
    # Imports count in the baseline, not in the load.
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a = f()
        t.append(time.perf_counter() - t0)
        del a
    med = float(np.median(t))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("peer %s: median %.4f s over %d, %.1f MB/s, peak RSS %.1f MiB (python baseline %.1f MiB)"
          % (path, med, repeats, os.path.getsize(path) / 1e6 / med, rss, base))


def main():
    a = sys.argv[1:]
    if len(a) >= 2 and a[0] == "gen":
        gen(a[1], "--quick" in a)
    elif len(a) >= 2 and a[0] == "load":
        key = a[a.index("--key") + 1] if "--key" in a else None
        repeats = int(a[a.index("--repeats") + 1]) if "--repeats" in a else 5
        load(a[1], key, repeats)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
