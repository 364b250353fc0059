#!/usr/bin/python3
"""Round times of a job with and without 100 open dashboard pages (issue 18).

    python3 bench/dash_pollers.py [build/ddts] [--pairs N] [--pages 100]

Runs the same job (a server with --dashboard on 127.0.0.1 and two clients, 32000 samples of
8 features, an MLP 8-256-256-3, 8 epochs, weights averaged every 200 steps: 32 rounds)
alternately without pages and with N simulated pages. A page does what the real one does:
one http.client connection (reopened for each request: the dashboard closes it after every
answer), GET /api/job and /api/clients every second, /api/history for
each client and the global model every 2 seconds. Round times are the intervals between
the rounds' completion times as the server recorded them (/api/job, rounds.recent), read
once near the end of each run. Prints, per run, the median and 90th percentile interval
and the wall time from the first to the last round, then the medians over the runs.
"""
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
from checks import free_port, make_mlp_job, mlp_job_argv, start_server  # noqa: E402


def page(host, port, stop, counts):
    conn = None
    n = 0
    while not stop.is_set():
        paths = ["/api/job", "/api/clients"]
        if n % 2 == 0:
            paths += ["/api/history?client=alpha", "/api/history?client=bravo",
                      "/api/history?client=@global"]
        for p in paths:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, port, timeout=5)
                conn.request("GET", p)
                r = conn.getresponse()
                r.read()
                counts[0 if r.status == 200 else 1] += 1
            except Exception:
                counts[1] += 1
                conn = None
        n += 1
        stop.wait(1.0)


def run(ddts, work, tag, pages):
    port = free_port()
    errf = os.path.join(work, tag + ".err")
    server = start_server(mlp_job_argv(ddts, work, port, os.path.join(work, tag), "bench", 8,
                                       ["--dashboard", "127.0.0.1:0", "--sync", "steps:200"]),
                          errf)
    url = None
    while url is None and server.poll() is None:
        m = re.search(r"dashboard: http://([^:/]+):(\d+)/", open(errf).read())
        url = (m.group(1), int(m.group(2))) if m else None
        time.sleep(0.1)
    while "waiting for 2 clients" not in open(errf).read():
        time.sleep(0.1)
    stop = threading.Event()
    counts = [0, 0]
    threads = [threading.Thread(target=page, args=(url[0], url[1], stop, counts))
               for _ in range(pages)]
    for t in threads:
        t.start()
    clients = [subprocess.Popen(
        [ddts, "client", "--server", "127.0.0.1:%d" % port, "--passphrase-file",
         os.path.join(work, "pass"), "--workdir", os.path.join(work, tag + "-" + n), "--name", n,
         "--threads", "1", "--retries", "0"], stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for n in ("alpha", "bravo")]
    rounds = []
    while server.poll() is None:
        try:
            c = http.client.HTTPConnection(url[0], url[1], timeout=5)
            c.request("GET", "/api/job")
            j = json.loads(c.getresponse().read())
            rounds = j["rounds"]["recent"] or rounds
        except Exception:
            pass
        time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    for c in clients:
        c.wait()
    t = [r["t"] for r in rounds]
    gaps = [b - a for a, b in zip(t, t[1:])]
    gaps.sort()
    res = {"rounds": len(t), "median": statistics.median(gaps) if gaps else float("nan"),
           "p90": gaps[int(0.9 * (len(gaps) - 1))] if gaps else float("nan"),
           "span": t[-1] - t[0] if t else float("nan"), "answers": counts[0], "failed": counts[1]}
    print("%-12s rounds %d  interval median %.3f s  p90 %.3f s  first->last %.1f s  "
          "(page requests: %d answered, %d failed)" % (
              tag, res["rounds"], res["median"], res["p90"], res["span"], counts[0], counts[1]),
          flush=True)
    return res


def main():
    args = sys.argv[1:]
    ddts = os.path.abspath(args[0] if args and not args[0].startswith("--") else "build/ddts")
    pairs = int(args[args.index("--pairs") + 1]) if "--pairs" in args else 2
    pages = int(args[args.index("--pages") + 1]) if "--pages" in args else 100
    work = tempfile.mkdtemp(prefix="ddts-bench-dash-")
    make_mlp_job(ddts, work, 32000, "bench passphrase")
    res = {0: [], pages: []}
    for i in range(pairs):
        for n in (0, pages):
            res[n].append(run(ddts, work, "pages%d-%d" % (n, i), n))
    for n in (0, pages):
        print("%3d pages: median of the runs' median intervals %.3f s, of their p90 %.3f s, "
              "of first->last %.1f s" % (n, statistics.median(r["median"] for r in res[n]),
                                         statistics.median(r["p90"] for r in res[n]),
                                         statistics.median(r["span"] for r in res[n])))


if __name__ == "__main__":
    main()
