#!/usr/bin/python3
"""PyTorch peer of bench_engine (issue 3): the same MLP and CNN on Fashion-MNIST.

Prints, in bench_engine's line format (run.sh parses both):
  mlp: train samples/s at batch 128: S1 (1 thread), S2 (2 threads)
  mlp: test accuracy after 2 epochs (batch 32, adam, N samples): ACC (T s)
  ...
  peak RSS: R MiB

Same method as bench_engine: Keras initialisation (glorot_uniform kernels,
zero biases), Adam with Keras' defaults (lr 1e-3, eps 1e-7), x / 255,
throughput = best of 3 one-epoch passes over n samples at batch 128 after a
512-sample warm-up; accuracy after 2 epochs at batch 32 with 2 threads, the
median over seeds 1-10, seed s giving both the initial weights and the
shuffling order.

  torch_engine.py [--quick] [--only mlp|cnn] [--throughput | --accuracy]
                  [--threads T] [--mlp-n N] [--cnn-n N] [--acc-n N]

--threads T measures the throughput at T threads only and prints
  mlp: train samples/s at batch 128, T thread(s): S
so that run.sh can start each thread count in its own environment (the
thread configuration is fixed when the process starts: OMP_WAIT_POLICY,
OPENBLAS_NUM_THREADS).
"""
import argparse
import ctypes
import gzip
import os
import resource
import statistics
import sys
import time

import numpy as np

try:
    import torch
    import torch.nn as nn
except ImportError:
    print("PyTorch not installed", file=sys.stderr)
    sys.exit(3)

DATA = os.environ.get("DDTS_SYSTEM_DATASETS", "/usr/share/datasets") + "/fashion-mnist"


SEEDS = 10  # accuracy runs per model


def load_idx(name):
    with gzip.open(os.path.join(DATA, name), "rb") as f:
        buf = f.read()
    rank = buf[3]
    shape = [int.from_bytes(buf[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(buf, dtype=np.uint8, offset=4 + 4 * rank).reshape(shape)


def load_simple(n):
    """The first n training samples and the test set as tensors (N, 1, 28, 28),
    normalised as ddts' `simple` normalizer (each pixel divided by its largest
    absolute value over the n training samples): bench/torch_train.py and
    bench/torch_ddp.py."""
    x = load_idx("train-images-idx3-ubyte.gz")[:n].astype(np.float32)
    y = load_idx("train-labels-idx1-ubyte.gz")[:n].astype(np.int64)
    tx = load_idx("t10k-images-idx3-ubyte.gz").astype(np.float32)
    ty = load_idx("t10k-labels-idx1-ubyte.gz").astype(np.int64)
    d = np.abs(x).reshape(x.shape[0], -1).max(axis=0)
    d[d == 0] = 1
    d = d.reshape(1, 28, 28)
    x = torch.from_numpy((x / d).reshape(-1, 1, 28, 28))
    tx = torch.from_numpy((tx / d).reshape(-1, 1, 28, 28))
    return x, torch.from_numpy(y), tx, torch.from_numpy(ty)


def keras_init(model):
    """Keras' default initialisation: glorot_uniform kernels and zero biases;
    for nn.LSTM / nn.GRU (one layer, one direction) also an orthogonal
    recurrent kernel and, for the LSTM, unit_forget_bias (1 on the forget
    gate's bias). xavier_uniform_ on weight_ih (gates*units, in) has Keras'
    fans for the kernel (in, gates*units), and orthogonal_ on weight_hh is the
    transpose of Keras' orthogonal (units, gates*units): the same
    distribution. PyTorch's bias_ih is Keras' bias; its bias_hh is the GRU's
    recurrent bias (reset_after=True has both), while a Keras LSTM has no
    second bias: bias_hh stays zero and untrained, the same function."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LSTM, nn.GRU)):
            assert m.num_layers == 1 and not m.bidirectional
            nn.init.xavier_uniform_(m.weight_ih_l0)
            nn.init.orthogonal_(m.weight_hh_l0)
            nn.init.zeros_(m.bias_ih_l0)
            nn.init.zeros_(m.bias_hh_l0)
            if isinstance(m, nn.LSTM):  # gates i, f, g, o as Keras' i, f, c, o
                with torch.no_grad():
                    m.bias_ih_l0[m.hidden_size:2 * m.hidden_size] = 1.0
                m.bias_hh_l0.requires_grad_(False)


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128),
                         nn.ReLU(), nn.Linear(128, 10))


def cnn():
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 5 * 5, 128),
                         nn.ReLU(), nn.Linear(128, 10))


def build(factory, seed=42):
    torch.manual_seed(seed)
    m = factory()
    keras_init(m)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, eps=1e-7)
    return m, opt


def run_epoch(m, opt, x, y, batch, gen):
    """One shuffled epoch; softmax + sparse categorical crossentropy."""
    m.train()
    loss_fn = nn.CrossEntropyLoss()
    perm = torch.randperm(x.shape[0], generator=gen)
    for i in range(0, x.shape[0], batch):
        idx = perm[i:i + batch]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(m(x[idx]), y[idx])
        loss.backward()
        opt.step()


_OPENBLAS = None  # [(library, its thread count at start)], found at the first call


def set_threads(threads):
    """torch.set_num_threads(threads), and at one thread OpenBLAS on one
    thread too. Debian's PyTorch calls the pthreads OpenBLAS, which starts a
    thread per core whatever torch.set_num_threads says: a "1-thread" peer
    ran its GEMMs on both cores of the bench machine (the MLP epoch 1.6x and
    prediction 1.85x faster than on one core, CPU time above wall time), so
    the 1-thread ratios compared one core of ddts with two of PyTorch. At
    more threads OpenBLAS keeps the count it started with (the environment
    decides: run.sh's peer_config)."""
    global _OPENBLAS
    torch.set_num_threads(threads)
    if _OPENBLAS is None:
        _OPENBLAS = []
        with open("/proc/self/maps") as f:
            paths = sorted({ln.split()[-1] for ln in f if "openblas" in ln.split()[-1]})
        for path in paths:
            try:
                lib = ctypes.CDLL(path)
                _OPENBLAS.append((lib, lib.openblas_get_num_threads()))
            except (OSError, AttributeError):
                pass
    for lib, start in _OPENBLAS:
        lib.openblas_set_num_threads(1 if threads == 1 else start)


def throughput(factory, threads, x, y, n):
    set_threads(threads)
    m, opt = build(factory)
    gen = torch.Generator().manual_seed(1)
    run_epoch(m, opt, x[:512], y[:512], 128, gen)
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        run_epoch(m, opt, x[:n], y[:n], 128, gen)
        best = max(best, n / (time.perf_counter() - t0))
    return best


def accuracy(factory, threads, x, y, n, tx, ty, seed):
    set_threads(threads)
    m, opt = build(factory, seed)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(2):
        run_epoch(m, opt, x[:n], y[:n], 32, gen)
    secs = time.perf_counter() - t0
    m.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, tx.shape[0], 256):
            correct += (m(tx[i:i + 256]).argmax(1) == ty[i:i + 256]).sum().item()
    return correct / tx.shape[0], secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only")
    ap.add_argument("--mlp-n", type=int)
    ap.add_argument("--cnn-n", type=int)
    ap.add_argument("--acc-n", type=int)
    ap.add_argument("--throughput", action="store_true", help="samples/s only")
    ap.add_argument("--accuracy", action="store_true", help="accuracy only")
    ap.add_argument("--first-seed", type=int, default=1, help="accuracy seeds S to S + 9")
    ap.add_argument("--threads", type=int, choices=(1, 2),
                    help="throughput at this thread count only")
    a = ap.parse_args()
    x = torch.from_numpy(load_idx("train-images-idx3-ubyte.gz").astype(np.float32) / 255.0)
    x = x.reshape(-1, 1, 28, 28)
    y = torch.from_numpy(load_idx("train-labels-idx1-ubyte.gz").astype(np.int64))
    tx = torch.from_numpy(load_idx("t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0)
    tx = tx.reshape(-1, 1, 28, 28)
    ty = torch.from_numpy(load_idx("t10k-labels-idx1-ubyte.gz").astype(np.int64))
    ntr = a.acc_n or (6000 if a.quick else x.shape[0])
    print("PyTorch %s, %s" % (torch.__version__, torch.__config__.parallel_info().splitlines()[0]))
    models = [("mlp", mlp, a.mlp_n or (6000 if a.quick else 20000)),
              ("cnn", cnn, a.cnn_n or (1024 if a.quick else 4096))]
    for name, factory, n_tp in models:
        if a.only and a.only != name:
            continue
        if not a.accuracy and a.threads:
            print("%s: train samples/s at batch 128, %d thread(s): %.0f" %
                  (name, a.threads, throughput(factory, a.threads, x, y, n_tp)))
            sys.stdout.flush()
        elif not a.accuracy:
            s1 = throughput(factory, 1, x, y, n_tp)
            s2 = throughput(factory, 2, x, y, n_tp)
            print("%s: train samples/s at batch 128: %.0f (1 thread), %.0f (2 threads)" %
                  (name, s1, s2))
            sys.stdout.flush()
        if a.throughput:
            continue
        # median over seeds S..S+9 (initial weights and shuffling), as bench_engine
        seeds = range(a.first_seed, a.first_seed + SEEDS)
        runs = [accuracy(factory, 2, x, y, ntr, tx, ty, seed) for seed in seeds]
        accs = [r[0] for r in runs]
        print("%s: test accuracy after 2 epochs (batch 32, adam, %d samples): %.4f (%.1f s) "
              "median of seeds %d-%d (initial weights and shuffling): %s" %
              (name, ntr, statistics.median(accs), sum(r[1] for r in runs) / SEEDS,
               a.first_seed, a.first_seed + SEEDS - 1, " ".join("%.4f" % v for v in accs)))
        sys.stdout.flush()
    print("peak RSS: %.1f MiB" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0))


if __name__ == "__main__":
    main()
