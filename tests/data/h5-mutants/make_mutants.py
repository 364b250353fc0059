#!/usr/bin/env python3
"""Seeded mutants of real Keras .h5 files, for the isolated HDF5 reader.

    make_mutants.py OUT_DIR [COUNT] [SEED]

Writes COUNT (300) mutants of tests/data/keras/{keras3_functional,keras22_sequential}.h5
into OUT_DIR as mNNN-<kind>.h5. Each mutant is one of:
  flip      1-16 random bytes replaced
  field     an aligned 4- or 8-byte field set to a huge or boundary value
            (sizes, addresses and lengths of the HDF5 structures)
  trunc     the file cut at a random offset
  splice    a random block copied over another place of the file
The same COUNT and SEED give the same files. The committed corpus in this
folder is a selection of the default run (README.md says which).
"""
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = ["keras3_functional.h5", "keras22_sequential.h5"]
HUGE = [0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0, 1, 0xFFFFFFFFFFFFFFFF, 0x7FFFFFFFFFFFFFFF,
        1 << 47, 1 << 40, 0xFFFF, 0x10000]


def mutate(rnd, data):
    b = bytearray(data)
    kind = rnd.choice(["flip", "field", "field", "trunc", "splice"])
    if kind == "flip":
        for _ in range(rnd.randint(1, 16)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
    elif kind == "field":
        width = rnd.choice([4, 8])
        at = rnd.randrange(0, len(b) - width) & ~(width - 1)
        v = rnd.choice(HUGE) & ((1 << (8 * width)) - 1)
        b[at:at + width] = v.to_bytes(width, "little")
    elif kind == "trunc":
        b = b[:rnd.randrange(8, len(b))]
    else:
        n = rnd.randint(8, 512)
        src, dst = rnd.randrange(len(b) - n), rnd.randrange(len(b) - n)
        b[dst:dst + n] = b[src:src + n]
    return kind, bytes(b)


def main():
    out = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 14
    rnd = random.Random(seed)
    srcs = [open(os.path.join(HERE, "..", "keras", s), "rb").read() for s in SOURCES]
    os.makedirs(out, exist_ok=True)
    for i in range(count):
        kind, data = mutate(rnd, srcs[i % len(srcs)])
        with open(os.path.join(out, "m%03d-%s.h5" % (i, kind)), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
