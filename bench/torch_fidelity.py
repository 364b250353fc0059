#!/usr/bin/python3
"""PyTorch side of bench_fidelity (see bench/bench_fidelity.c).

  torch_fidelity.py mlp|cnn N DIR

Loads DIR/w0.bin (ddts' initial weights, Keras layouts) into the engine
benchmark's PyTorch model, trains 2 epochs at batch 32 with Adam (Keras
defaults) on the first N training samples in file order, then evaluates it and
ddts' trained weights (DIR/w1.bin, loaded the same way) on the 10000 test
samples. Prints:
  fidelity M: ddts ACC  PyTorch ACC  difference D (same initial weights, same batches)
"""
import os
import sys

import numpy as np

try:
    import torch
    import torch.nn as nn
except ImportError:
    print("PyTorch not installed", file=sys.stderr)
    sys.exit(3)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_engine as te  # noqa: E402 (same data loader and models)


def load(model, kind, w):
    """ddts' flat weights (Keras layouts) into the PyTorch model."""
    o = 0

    def take(n):
        nonlocal o
        a = w[o:o + n]
        o += n
        return a

    with torch.no_grad():
        if kind == "mlp":
            for lin, (a, b) in zip([model[1], model[3], model[5]], [(784, 256), (256, 128), (128, 10)]):
                lin.weight.copy_(torch.from_numpy(take(a * b).reshape(a, b).T.copy()))
                lin.bias.copy_(torch.from_numpy(take(b).copy()))
        else:
            for conv, (cin, cout) in zip([model[0], model[3]], [(1, 32), (32, 64)]):
                k = take(9 * cin * cout).reshape(3, 3, cin, cout)  # HWIO -> OIHW
                conv.weight.copy_(torch.from_numpy(k.transpose(3, 2, 0, 1).copy()))
                conv.bias.copy_(torch.from_numpy(take(cout).copy()))
            # Keras flattens (h, w, c), PyTorch (c, h, w): permute the rows
            k = take(1600 * 128).reshape(5, 5, 64, 128).transpose(2, 0, 1, 3).reshape(1600, 128)
            model[7].weight.copy_(torch.from_numpy(k.T.copy()))
            model[7].bias.copy_(torch.from_numpy(take(128).copy()))
            model[9].weight.copy_(torch.from_numpy(take(1280).reshape(128, 10).T.copy()))
            model[9].bias.copy_(torch.from_numpy(take(10).copy()))
    if o != len(w):
        sys.exit("weights: %d values, the model takes %d" % (len(w), o))


def main():
    kind, n, d = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    torch.set_num_threads(1)
    x = torch.from_numpy(te.load_idx("train-images-idx3-ubyte.gz")[:n].astype(np.float32) / 255.0)
    x = x.reshape(-1, 1, 28, 28)
    y = torch.from_numpy(te.load_idx("train-labels-idx1-ubyte.gz")[:n].astype(np.int64))
    tx = torch.from_numpy(te.load_idx("t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0)
    tx = tx.reshape(-1, 1, 28, 28)
    ty = torch.from_numpy(te.load_idx("t10k-labels-idx1-ubyte.gz").astype(np.int64))
    factory = te.mlp if kind == "mlp" else te.cnn
    w0 = np.fromfile(os.path.join(d, "w0.bin"), dtype=np.float32)
    w1 = np.fromfile(os.path.join(d, "w1.bin"), dtype=np.float32)
    m = factory()
    load(m, kind, w0)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    m.train()
    for _ in range(2):
        for i in range(0, n, 32):
            opt.zero_grad(set_to_none=True)
            loss_fn(m(x[i:i + 32]), y[i:i + 32]).backward()
            opt.step()
    md = factory()
    load(md, kind, w1)

    def accuracy(model):
        model.eval()
        with torch.no_grad():
            return (model(tx).argmax(1) == ty).float().mean().item()

    a_d, a_t = accuracy(md), accuracy(m)
    print("fidelity %s: ddts %.4f  PyTorch %.4f  difference %+.4f (same initial weights, same "
          "batches, %d samples)" % (kind, a_d, a_t, a_d - a_t, n))


if __name__ == "__main__":
    main()
