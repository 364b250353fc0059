#!/usr/bin/env python3
"""The scaling model of docs/scaling.md, fitted to bench/netem.sh's output.

    python3 bench/scaling.py NETEM_OUTPUT [--mlp-sps S] [--cnn-sps S]

Reads the lines bench/netem.sh prints (time per exchange of the MPI ring and
of the server's star, per model size and link rate), fits for each path and
rate the time of one exchange as T = a + bytes / b (least squares over the
model sizes), and prints, as Markdown:
  * the fitted a (fixed cost) and b (effective bandwidth), with the measured
    points each rests on;
  * predictions for 8 to 256 machines, ring and star, --sync step and
    --sync epoch, 1 and 10 Gbit/s, one-way delay 0.1 and 50 ms;
  * the crossovers (where star and ring change places, where adding machines
    stops paying).

The model (docs/scaling.md explains each term):
  ring  T(N) = 2 (N - 1) (a / 2 + d) + 2 (N - 1) / N * M / b_ring
        (the fit at N = 2 holds 2 (N - 1) = 2 messages: a / 2 each)
  star  T(N) = a + 2 d + N * M / b_star
        (the server's link carries N models in and N out; the fit at N = 2
        measured 2 M over it)
where M is the bytes each machine contributes per exchange and d the one-way
delay, which this VM's kernel cannot emulate (no sch_netem): its term is
analytic, and every figure that depends on it says so.
"""
import argparse
import re
import sys

MB = 1e6
SIZES_N = [2, 8, 16, 32, 64, 128, 256]
DELAYS_MS = [0.1, 50.0]
SAMPLES = 60000  # Fashion-MNIST's training set
BATCH = 128      # per machine, as in the engine benchmark

# The engine case's models (bench/models.h): parameter counts.
MODELS = {
    "MLP 784-256-128-10 (235146 parameters)": 235146,
    "25 MB model (6.25 M parameters)": 6250000,
}

LINE_MPI = re.compile(r"^\[(\d+)gbit[^\]]*\] mpi (gradient|weight) .*?, 2 ranks, ([\d.]+) MB model: "
                      r"([\d.]+) ms per exchange.*ring sends ([\d.]+) MB per rank")
LINE_STAR = re.compile(r"^\[(\d+)gbit[^\]]*\] server path, 2 clients: .*?\(([\d.]+) MB\).*?"
                       r"([\d.]+) ms per round after the first")


def fit(points):
    """Least squares T = a + x / b over (x bytes, T seconds); a >= 0."""
    n = len(points)
    sx = sum(p[0] for p in points)
    sy = sum(p[1] for p in points)
    sxx = sum(p[0] * p[0] for p in points)
    sxy = sum(p[0] * p[1] for p in points)
    den = n * sxx - sx * sx
    if n < 2 or den <= 0:
        return None
    slope = (n * sxy - sx * sy) / den
    a = (sy - slope * sx) / n
    if a < 0:  # a negative fixed cost is noise: refit through the origin
        a = 0.0
        slope = sxy / sxx
    return a, (1.0 / slope if slope > 0 else float("inf"))


def read(path):
    ring, star = {}, {}
    with open(path) as f:
        for line in f:
            m = LINE_MPI.match(line)
            if m:
                rate, kind, _mb, ms, sent = m.groups()
                # Only the gradient exchange (float32) is used for the fit;
                # the weight exchange (float64, twice the bytes) checks it.
                ring.setdefault((int(rate), kind), []).append((float(sent) * MB, float(ms) / 1e3))
                continue
            m = LINE_STAR.match(line)
            if m:
                rate, mb, ms = m.groups()
                # The server's link carries 2 models in (and 2 out) per round.
                star.setdefault(int(rate), []).append((2 * float(mb) * MB, float(ms) / 1e3))
    return ring, star


def t_ring(n, m_bytes, a, b, d):
    return 2 * (n - 1) * (a / 2 + d) + 2 * (n - 1) / n * m_bytes / b


def t_star(n, m_bytes, a, b, d):
    return a + 2 * d + n * m_bytes / b


def speedup(n, t_exchange, sps, mode):
    """Speed-up over one machine training all samples (same per-machine batch)."""
    one = SAMPLES / sps
    if mode == "step":
        steps = SAMPLES / (n * BATCH)
        return one / (steps * (BATCH / sps + t_exchange))
    return one / (SAMPLES / (n * sps) + t_exchange)  # epoch: one exchange


def crossovers(fits, sps):
    """Per model, link and sync mode: which path is faster at which N, and
    the N (of 2..256, powers of two) that gives the largest speed-up."""
    print("### Which path, and how many machines\n")
    print("| model | link, delay | sync | faster path by N (2..256) | best N: speed-up (path) |")
    print("|---|---|---|---|---|")
    for name, params in MODELS.items():
        for rate in (1, 10):
            fr, fs = fits.get(("ring (MPI)", rate)), fits.get(("star (server)", rate))
            if fr is None or fs is None:
                continue
            for d_ms in DELAYS_MS:
                d = d_ms / 1e3
                for mode in ("step", "epoch"):
                    mr = (params + 1) * (4 if mode == "step" else 8)
                    ms = (params + 1) * 4
                    runs = []  # [path, first N, last N]
                    best = (0.0, 0, "")
                    for n in range(2, 257):
                        tr, ts = t_ring(n, mr, fr[0], fr[1], d), t_star(n, ms, fs[0], fs[1], d)
                        w = "ring" if tr < ts else "star"
                        if runs and runs[-1][0] == w:
                            runs[-1][2] = n
                        else:
                            runs.append([w, n, n])
                        for t, path in ((tr, "ring"), (ts, "star")):
                            s = speedup(n, t, sps[name], mode)
                            if s > best[0]:
                                best = (s, n, path)
                    print("| %s | %d Gbit/s, %g ms | %s | %s | N=%d: %.1fx (%s) |"
                          % (name.split(" (")[0], rate, d_ms, mode,
                             ", ".join("%s %d-%d" % tuple(r) for r in runs), best[1], best[0],
                             best[2]))
    print()


def fmt_t(s):
    return "%.1f ms" % (s * 1e3) if s < 1 else "%.2f s" % s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("netem_output")
    ap.add_argument("--mlp-sps", type=float, default=89432,
                    help="engine MLP samples/s on one machine (docs/benchmarks.md, 1 thread)")
    ap.add_argument("--big-sps", type=float, default=0,
                    help="samples/s of the 25 MB model (default: the MLP's rate per parameter, "
                         "a dense model's compute grows with its parameters)")
    args = ap.parse_args()
    ring, star = read(args.netem_output)
    if not ring or not star:
        sys.exit("scaling.py: no bench/netem.sh lines in %s" % args.netem_output)

    print("### Fitted exchange costs\n")
    print("| path | link | points (MB on the link: ms) | fixed cost a | effective bandwidth b |")
    print("|---|---|---|---|---|")
    fits = {}
    for rate in sorted({r for r, _ in ring} | set(star)):
        for path, pts in (("ring (MPI)", ring.get((rate, "gradient"), [])),
                          ("star (server)", star.get(rate, []))):
            f = fit(pts)
            if f is None:
                continue
            fits[(path, rate)] = f
            shown = ", ".join("%.2f: %.1f" % (x / MB, y * 1e3) for x, y in sorted(pts))
            print("| %s | %d Gbit/s | %s | %s | %.0f MB/s (%.0f %% of the link) |"
                  % (path, rate, shown, fmt_t(f[0]), f[1] / MB, 100 * f[1] * 8 / (rate * 1e9)))
    print()
    mlp_params = min(MODELS.values())
    big = args.big_sps or args.mlp_sps * mlp_params / max(MODELS.values())
    sps = {name: (args.mlp_sps if "MLP" in name else big) for name in MODELS}
    for name, params in MODELS.items():
        print("### %s, %d samples/s per machine\n" % (name, sps[name]))
        print("Bytes per machine and exchange: step %.2f MB (float32 gradients), "
              "epoch %.2f MB (float64 weights into MPI_Allreduce; float32 to the server)\n"
              % ((params + 1) * 4 / MB, (params + 1) * 8 / MB))
        print("| link, delay | sync | path | " + " | ".join("N=%d" % n for n in SIZES_N[1:]) + " |")
        print("|---|---|---|" + "---|" * (len(SIZES_N) - 1))
        for rate in (1, 10):
            for d_ms in DELAYS_MS:
                for mode in ("step", "epoch"):
                    for path in ("ring (MPI)", "star (server)"):
                        f = fits.get((path, rate))
                        if f is None:
                            continue
                        a, b = f
                        cells = []
                        for n in SIZES_N[1:]:
                            if path.startswith("ring"):
                                mb = (params + 1) * (4 if mode == "step" else 8)
                                t = t_ring(n, mb, a, b, d_ms / 1e3)
                            else:
                                t = t_star(n, (params + 1) * 4, a, b, d_ms / 1e3)
                            cells.append("%s, %.1fx" % (fmt_t(t), speedup(n, t, sps[name], mode)))
                        print("| %d Gbit/s, %g ms | %s | %s | %s |"
                              % (rate, d_ms, mode, path, " | ".join(cells)))
        print()
    crossovers(fits, sps)
    print("Cells: time of one exchange, and the speed-up over one machine training all %d "
          "samples (batch %d per machine; --sync step exchanges every step, --sync epoch once "
          "per epoch). The delay term is analytic (not emulated here)." % (SAMPLES, BATCH))


if __name__ == "__main__":
    main()
