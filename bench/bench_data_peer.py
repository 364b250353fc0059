#!/usr/bin/python3
"""Peer of bench_data: writes the benchmark files, and times numpy / pandas
loading them (best of 3), printing "SECONDS PEAK_RSS_KB" for one case.

  bench_data_peer.py gen DIR
  bench_data_peer.py time CASE FILE      CASE: csv npz xlsx
"""
import os
import resource
import sys
import time

import numpy as np


def gen(d):
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(100000, 10))  # 20 MB of CSV text with pandas' repr
    import pandas as pd

    cols = [f"c{i}" for i in range(10)]
    pd.DataFrame(a, columns=cols).to_csv(os.path.join(d, "numeric.csv"), index=False)
    big = rng.normal(size=(1000000, 8)).astype(np.float64)  # 64 MB
    np.savez(os.path.join(d, "stored.npz"), x=big)
    img = rng.integers(0, 256, size=(60000, 28, 28), dtype=np.uint8)
    img[:, :4, :] = 0  # MNIST-like: compressible borders
    np.savez_compressed(os.path.join(d, "deflated.npz"), x=img)
    small = rng.normal(size=(20000, 10))
    pd.DataFrame(small, columns=cols).to_excel(os.path.join(d, "sheet.xlsx"), index=False)


def time_case(case, path):
    import importlib

    if case == "csv":
        pd = importlib.import_module("pandas")
        fn = lambda: pd.read_csv(path).to_numpy()
    elif case == "xlsx":
        pd = importlib.import_module("pandas")
        fn = lambda: pd.read_excel(path).to_numpy()
    else:
        fn = lambda: np.load(path)["x"]
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    print(f"{best:.6f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(sys.argv[2])
    else:
        time_case(sys.argv[2], sys.argv[3])
