#!/usr/bin/env python3
"""PyTorch peer of the `examples` bench case: the same work as `ddts train`
on examples/cifar_mobilenet.json, examples/imdb_transformer.json and
examples/text_gru.json (whose Embedding masks zeros: the data hold none, so
PyTorch's unmasked GRU does the same work).

    python3 bench/torch_examples.py DATA_DIR MODEL THREADS EPOCHS

DATA_DIR holds X/x.npy and Y/y.npy (written by bench/run.sh with the
generators of tests/integration/test_examples_mobile.py). The same split as
ddts (the last 30 % validate), batch 32, Adam (lr 1e-3, Keras' epsilon 1e-7),
shuffled training batches, a validation pass after every epoch, the same
layer shapes (BatchNormalization momentum 0.9 is PyTorch's 0.1, epsilon as
Keras'). Prints "samples/s S" over the whole epochs, validation included, as
ddts' summary.json samples_per_second counts them (training samples per
second of fit time), after one warm-up epoch.
"""
import os
import sys
import time

import numpy as np
import torch
from torch import nn


class MobileNet(nn.Module):
    def __init__(self):
        super().__init__()

        def bn(c):
            return nn.BatchNorm2d(c, eps=1e-3, momentum=0.1)

        layers = [nn.Conv2d(3, 16, 3, 2, 1, bias=False), bn(16), nn.ReLU6()]
        c = 16
        for f, s in ((32, 1), (64, 2), (64, 1), (128, 2)):
            layers += [nn.Conv2d(c, c, 3, s, 1, groups=c, bias=False), bn(c), nn.ReLU6(),
                       nn.Conv2d(c, f, 1, bias=False), bn(f), nn.ReLU6()]
            c = f
        self.body = nn.Sequential(*layers)
        self.drop = nn.Dropout(0.2)
        self.out = nn.Linear(128, 10)

    def forward(self, x):  # x: (N, 32, 32, 3) uint8 as float
        x = x.permute(0, 3, 1, 2) / 255.0
        return self.out(self.drop(self.body(x).mean(dim=(2, 3))))


class Transformer(nn.Module):
    def __init__(self, vocab=10000, d=32):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.ln_a = nn.LayerNorm(d, eps=1e-6)
        self.att = nn.MultiheadAttention(d, 2, batch_first=True)  # 2 heads x 16 = Keras key_dim 16
        self.drop_a = nn.Dropout(0.1)
        self.ln_b = nn.LayerNorm(d, eps=1e-6)
        self.ffn = nn.Sequential(nn.Linear(d, 64), nn.ReLU(), nn.Linear(64, d))
        self.drop = nn.Dropout(0.1)
        self.out = nn.Linear(d, 1)

    def forward(self, x):
        e = self.emb(x)
        h = self.ln_a(e)
        a, _ = self.att(h, h, h, need_weights=False)
        x1 = e + self.drop_a(a)
        x2 = x1 + self.ffn(self.ln_b(x1))
        return self.out(self.drop(x2.mean(dim=1))).squeeze(1)


class TextGRU(nn.Module):
    """examples/text_gru.json: Embedding(10000, 32) -> Bidirectional(GRU(32),
    concat; the GRU with reset_after, PyTorch's formulation) -> Dense(1)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10000, 32)
        self.gru = nn.GRU(32, 32, batch_first=True, bidirectional=True)
        self.out = nn.Linear(64, 1)

    def forward(self, x):
        _, h = self.gru(self.emb(x))  # h: (2, N, 32), the last state of each direction
        return self.out(torch.cat([h[0], h[1]], dim=1)).squeeze(1)


def main():
    data, which, threads, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    x = np.load(os.path.join(data, "X", "x.npy"))
    y = np.load(os.path.join(data, "Y", "y.npy"))
    cut = int(len(x) * 0.7)
    if which == "cifar_mobilenet":
        model, lossf = MobileNet(), nn.CrossEntropyLoss()
        xt = torch.from_numpy(x.astype(np.float32))
        yt = torch.from_numpy(y.astype(np.int64))
    else:
        model = Transformer() if which == "imdb_transformer" else TextGRU()
        lossf = nn.BCEWithLogitsLoss()
        xt = torch.from_numpy(x.astype(np.int64))
        yt = torch.from_numpy(y.astype(np.float32))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    g = torch.Generator().manual_seed(1)

    def epoch():
        model.train()
        for idx in torch.randperm(cut, generator=g).split(32):
            opt.zero_grad(set_to_none=True)
            loss = lossf(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            for i in range(cut, len(x), 32):
                lossf(model(xt[i:i + 32]), yt[i:i + 32])

    epoch()  # warm-up
    t0 = time.perf_counter()
    for _ in range(epochs):
        epoch()
    s = time.perf_counter() - t0
    print("samples/s %.1f" % (cut * epochs / s))


if __name__ == "__main__":
    main()
