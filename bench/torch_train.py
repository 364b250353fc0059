#!/usr/bin/python3
"""PyTorch peer of the `train` and `recurrent` cases of bench/run.sh (issues
16 and 15): what one `ddts train` epoch does, in PyTorch.

The work of `ddts train --data keras --keras-dataset fashion_mnist
--normalizer simple --batch-size 128 --epochs 1 [--samples N]`:
  - the first N training samples of Debian's Fashion-MNIST files (those ddts
    reads), ddts' `simple` normalizer: x divided by the feature's largest |x|
    over those training samples (1 where it is 0), computed before the timing
    as ddts computes its statistics before fit;
  - the model of examples/fashion_mlp.json, examples/fashion_cnn.json, or the
    Dropout variants that run.sh builds with `ddts model new --layers`
    (mlp_dropout: Dropout 0.2 after each hidden Dense; cnn_dropout: Dropout
    0.25 after Flatten and 0.5 after Dense(128)), or of
    examples/fashion_lstm.json and examples/fashion_gru.json (lstm, gru: each
    image's 28 rows as 28 steps of 28 features, nn.LSTM(28, 128) or
    nn.GRU(28, 128) -- PyTorch's GRU is Keras' reset_after=True -- and
    Dense(10) on the last output), Keras initialisation (torch_engine's
    keras_init: glorot_uniform kernels, orthogonal recurrent kernels,
    unit_forget_bias, zero biases);
  - Adam with Keras' defaults (lr 1e-3, eps 1e-7), batch 128 (--batch), the
    samples shuffled every epoch, softmax + sparse categorical crossentropy;
  - after each epoch, the validation pass over the 10000 test samples at the
    same batch size (eval(), no_grad: loss and accuracy), as Keras' fit with
    validation_data and `ddts train` do.
The epoch's wall time covers the training loop and the validation pass.
ddts keeps the images uint8 and normalises each batch as it gathers it; this
peer normalises the whole array once, before the timing (its best case).

Prediction: eval() under no_grad over the 10000 test samples at batch 128,
the outputs copied out (what `ddts predict` computes), best of 3 passes
(--predict-passes; 0: none, and no predict figure).

Prints one line per model and thread count (run.sh parses them), the
validation accuracy that of the last epoch, the epoch time and its CPU time
(all threads: above the wall time when more than one core works) the means
over the epochs, then the process's peak RSS so far after the imports, after the data
and at the end:
  train mlp threads 1: epoch 2.345 s, cpu 2.351 s, samples/s 25586, val_accuracy 0.8421, predict samples/s 250000
  peak RSS: 412.0 MiB (after the imports 180.1 MiB, after the data 330.2 MiB)

  torch_train.py --models mlp,cnn --threads 1,2 [--samples N] [--epochs E] [--seed S]
                 [--batch B] [--predict-passes P]
Thread settings come from the environment (run.sh tries OMP_WAIT_POLICY and
OPENBLAS_NUM_THREADS) plus torch.set_num_threads(N). Exit status 3 when
PyTorch is not importable.
"""
import argparse
import os
import resource
import sys
import time

try:
    import torch
    import torch.nn as nn
except ImportError:
    print("PyTorch not installed", file=sys.stderr)
    sys.exit(3)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_engine import keras_init, load_simple, run_epoch, set_threads  # noqa: E402 (the engine bench's)


def mlp(dropout):
    layers = [nn.Flatten(), nn.Linear(784, 256), nn.ReLU()]
    layers += [nn.Dropout(0.2)] if dropout else []
    layers += [nn.Linear(256, 128), nn.ReLU()]
    layers += [nn.Dropout(0.2)] if dropout else []
    return nn.Sequential(*layers, nn.Linear(128, 10))


def cnn(dropout):
    layers = [nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
              nn.MaxPool2d(2), nn.Flatten()]
    layers += [nn.Dropout(0.25)] if dropout else []
    layers += [nn.Linear(64 * 5 * 5, 128), nn.ReLU()]
    layers += [nn.Dropout(0.5)] if dropout else []
    return nn.Sequential(*layers, nn.Linear(128, 10))


class Recurrent(nn.Module):
    """examples/fashion_lstm.json, examples/fashion_gru.json: the rows of an
    image as 28 steps of 28 features -> LSTM(128) or GRU(128), its last
    output -> Dense(10) (softmax in the loss)."""

    def __init__(self, cell):
        super().__init__()
        self.rnn = cell(28, 128, batch_first=True)
        self.out = nn.Linear(128, 10)

    def forward(self, x):
        _, h = self.rnn(x.view(-1, 28, 28))
        return self.out((h[0] if isinstance(h, tuple) else h)[0])


MODELS = {
    "mlp": lambda: mlp(False),
    "mlp_dropout": lambda: mlp(True),
    "cnn": lambda: cnn(False),
    "cnn_dropout": lambda: cnn(True),
    "lstm": lambda: Recurrent(nn.LSTM),
    "gru": lambda: Recurrent(nn.GRU),
}


def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def epoch(m, opt, x, y, tx, ty, batch, gen):
    """One shuffled training epoch, then the validation pass; (seconds, CPU
    seconds of all the process's threads, val_accuracy)."""
    loss_fn = nn.CrossEntropyLoss()
    c0 = time.process_time()
    t0 = time.perf_counter()
    run_epoch(m, opt, x, y, batch, gen)
    m.eval()
    correct, total_loss = 0, 0.0
    with torch.no_grad():
        for i in range(0, tx.shape[0], batch):
            out = m(tx[i:i + batch])
            total_loss += loss_fn(out, ty[i:i + batch]).item() * out.shape[0]
            correct += (out.argmax(1) == ty[i:i + batch]).sum().item()
    return time.perf_counter() - t0, time.process_time() - c0, correct / tx.shape[0]


def predict_rate(m, tx, batch, passes):
    m.eval()
    best = 0.0
    out = torch.empty(tx.shape[0], 10)
    with torch.no_grad():
        for _ in range(passes):
            t0 = time.perf_counter()
            for i in range(0, tx.shape[0], batch):
                out[i:i + batch] = torch.softmax(m(tx[i:i + batch]), 1)
            best = max(best, tx.shape[0] / (time.perf_counter() - t0))
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--samples", type=int, default=60000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--predict-passes", type=int, default=3)
    a = ap.parse_args()
    rss_imports = rss_mib()
    x, y, tx, ty = load_simple(a.samples)
    rss_data = rss_mib()
    for name in a.models.split(","):
        for t in [int(v) for v in a.threads.split(",")]:
            set_threads(t)
            torch.manual_seed(a.seed)
            m = MODELS[name]()
            keras_init(m)
            opt = torch.optim.Adam(m.parameters(), lr=1e-3, eps=1e-7)
            gen = torch.Generator().manual_seed(a.seed)
            secs, cpu, acc = 0.0, 0.0, 0.0
            for _ in range(a.epochs):
                s, c, acc = epoch(m, opt, x, y, tx, ty, a.batch, gen)
                secs += s
                cpu += c
            secs /= a.epochs
            cpu /= a.epochs
            line = "train %s threads %d: epoch %.3f s, cpu %.3f s, samples/s %.0f, val_accuracy %.4f" % (
                name, t, secs, cpu, x.shape[0] / secs, acc)
            if a.predict_passes > 0:
                line += ", predict samples/s %.0f" % predict_rate(m, tx, a.batch, a.predict_passes)
            print(line)
            sys.stdout.flush()
    print("peak RSS: %.1f MiB (after the imports %.1f MiB, after the data %.1f MiB)"
          % (rss_mib(), rss_imports, rss_data))


if __name__ == "__main__":
    main()
