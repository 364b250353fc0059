#!/usr/bin/python3
"""PyTorch DistributedDataParallel (gloo) peer of the distributed bench (issue 7).

The task of bench/run.sh's `dist` case: Fashion-MNIST (the first N training
samples, Debian's dataset-fashion-mnist files that ddts reads too), the MLP
784-256-128-10 or the CNN Conv(32,3x3)-MaxPool-Conv(64,3x3)-MaxPool-Dense(128)-
Dense(10) of examples/fashion_*.json, Keras initialisation (glorot-uniform
kernels, zero biases), Adam with Keras' defaults (lr 1e-3, eps 1e-7), ddts'
`--normalizer simple` (x / the feature's largest |x| over the training data),
a batch of B samples per process, E epochs, one thread per process
(torch.set_num_threads(1)), world size 1 and 2 started with
torch.multiprocessing.spawn, gloo on 127.0.0.1 at a free port, a
DistributedSampler giving each process its half of the shuffled data every
epoch. Test accuracy of rank 0's model (DDP keeps the replicas identical) on
the 10000 test samples.

DDP is synchronous: the gradients are all-reduced (averaged) at every step, so
world size 2 at batch B is single-process training at batch 2B. ddts `--sync
epoch` instead trains each share alone for an epoch and averages the weights
once per epoch.

--validate epoch (the peer of bench/run.sh's `mpi` case, which validates
like `ddts train --distributed mpi`): after every epoch each process
evaluates its contiguous slice of the 10000 test samples (sizes within one of
each other, as ddts' ranks do) and the loss and correct counts are summed
with one all_reduce, so every process has the figures of the whole set; the
reported accuracy is the last epoch's, and the training loop's time includes
these validation passes (ddts' fit time does too).

Prints one line per model and world size (bench/run.sh parses them):
  ddp mlp world 1: wall 21.3 s, train 18.9 s, samples/s 6349.2, test accuracy 0.8712
wall: from spawning the processes to their end (start-up, data loading,
process group, training, evaluation); train: rank 0's training loop alone;
samples/s: samples * epochs / train.

  torch_ddp.py [--models mlp,cnn] [--worlds 1,2] [--epochs 4] [--batch 32]
               [--samples 60000] [--seed 5] [--validate end|epoch]
Exit status 3 when PyTorch is not importable.
"""
import argparse
import os
import socket
import sys
import time

try:
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    import torch.nn as nn
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
except ImportError:
    print("PyTorch not installed", file=sys.stderr)
    sys.exit(3)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_engine import cnn, keras_init, load_simple, mlp  # noqa: E402 (the engine bench's)


MODELS = {"mlp": mlp, "cnn": cnn}


def worker(rank, world, port, a, name, results):
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    x, y, tx, ty = load_simple(a.samples)
    torch.manual_seed(a.seed)
    model = MODELS[name]()
    keras_init(model)
    ddp = DistributedDataParallel(model)  # broadcasts rank 0's weights
    opt = torch.optim.Adam(ddp.parameters(), lr=1e-3, eps=1e-7)
    sampler = DistributedSampler(TensorDataset(x, y), num_replicas=world, rank=rank,
                                 shuffle=True, seed=a.seed)
    loader = DataLoader(TensorDataset(x, y), batch_size=a.batch, sampler=sampler)
    loss_fn = nn.CrossEntropyLoss()
    dist.barrier()
    t0 = time.perf_counter()
    val_acc = None
    for epoch in range(a.epochs):
        sampler.set_epoch(epoch)
        ddp.train()
        for xb, yb in loader:
            opt.zero_grad(set_to_none=True)
            loss_fn(ddp(xb), yb).backward()  # gradients all-reduced here
            opt.step()
        if a.validate == "epoch":
            val_acc = validate_slice(model, tx, ty, rank, world, a.batch)
    train_s = time.perf_counter() - t0
    if val_acc is not None:
        if rank == 0:
            results.put((train_s, val_acc))
    elif rank == 0:
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, tx.shape[0], 1000):
                correct += (model(tx[i:i + 1000]).argmax(1) == ty[i:i + 1000]).sum().item()
        results.put((train_s, correct / tx.shape[0]))
    dist.barrier()
    # Not dist.destroy_process_group(): on PyTorch 1.13, rank 0 (the TCPStore's
    # host) sometimes never returns from it once the other ranks have gone (its
    # store thread spins on their closed sockets), hanging mp.spawn. Every rank
    # passed the barrier and rank 0's result is in the queue (a pipe, written
    # synchronously): leave now; the sockets close with the process.
    sys.stdout.flush()
    os._exit(0)


def validate_slice(model, tx, ty, rank, world, batch):
    """This process's slice of the test samples, the sums combined over the processes."""
    n = tx.shape[0]
    size = n // world + (rank < n % world)
    lo = rank * (n // world) + min(rank, n % world)
    sums = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, samples
    model.eval()
    with torch.no_grad():
        for i in range(lo, lo + size, batch):
            j = min(i + batch, lo + size)
            out = model(tx[i:j])
            sums[0] += nn.functional.cross_entropy(out, ty[i:j], reduction="sum").item()
            sums[1] += (out.argmax(1) == ty[i:j]).sum().item()
            sums[2] += j - i
    dist.all_reduce(sums)
    return sums[1].item() / sums[2].item()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--worlds", default="1,2")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--samples", type=int, default=60000)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--validate", choices=("end", "epoch"), default="end")
    a = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the spawned processes
    print("PyTorch %s, DDP gloo on 127.0.0.1, 1 thread per process, batch %d per process" %
          (torch.__version__, a.batch))
    sys.stdout.flush()
    ctx = mp.get_context("spawn")
    for name in a.models.split(","):
        for world in (int(w) for w in a.worlds.split(",")):
            results = ctx.SimpleQueue()
            t0 = time.perf_counter()
            mp.spawn(worker, args=(world, free_port(), a, name, results), nprocs=world)
            wall = time.perf_counter() - t0
            train_s, acc = results.get()
            print("ddp %s world %d: wall %.1f s, train %.1f s, samples/s %.1f, test accuracy %.4f" %
                  (name, world, wall, train_s, a.samples * a.epochs / train_s, acc))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
