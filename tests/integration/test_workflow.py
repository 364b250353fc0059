#!/usr/bin/python3
"""The original workflow's failure paths (issue 13), with the real ddts programs.

1. Checks before serving: a file that is not a model, a model whose input
   does not fit the samples, a label out of range for the loss (named by its
   file and row), labels that do not fit the loss's outputs: `ddts server`
   fails at once, naming the file, and leaves no job in the work folder
   (nothing split, nothing served; before, it split the data and waited for
   clients that could only fail).
2. Honest status: with --data client, a client whose data folder does not
   exist fails its share; the server exits non-zero, summary.json says
   "partial" with the failed share's client and its error text, summary.txt
   too, and the client's error.log (error, status, context, settings) is
   uploaded beside the other results. When two clients fail with the same
   error the job stops at once (the third client, still training a larger
   share, is not waited for), summary.json says "failed" with that error.
   --sync step / steps:K with a validation split, with shares that are whole
   batches (share % batch == 0) and with uneven shares: every client agrees
   on the exchange points, no exchange is empty and the job succeeds
   (before, the exchange at the epoch end carried no sample and the clients
   failed).
3. Reruns and collect mode: `ddts server` again in a work folder whose job
   was made with other settings refuses at once, naming each difference and
   pointing at --name and --resume; the same settings resume the finished
   job as before; --resume takes the job's own settings. `--collect` finds
   the one job of --workdir, lists several (--name required), refuses a
   folder without a job at once, and tells a client that holds nothing of
   the job that it is done without changing the client's current job. A
   failed start (port in use) leaves no job: the next run with other
   settings is not refused.
6. A client says what it waits for (the other clients, a round that a slower
   client holds up) instead of silence.
   A client whose retries are spent says its results are kept in its folder
   and how --collect fetches them; `ddts inspect` aligns every row of its
   table, however long a layer's name. summary.json carries every metric of
   the global model (test_mae beside test_loss and test_accuracy) and of each
   client.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checks  # noqa: E402
from checks import (Checks, data_job_args, free_port, run_job, stop, wait_listening,  # noqa: E402
                    write_passphrase)

DDTS = os.path.abspath(os.environ.get("DDTS", "build/ddts"))
check = Checks()


def server(work, *args, timeout=60, tag="w"):
    """Runs `ddts server` (stdin not a terminal); (exit status, stderr, stdout)."""
    argv = [DDTS, "server", "--host", "127.0.0.1", "--port", str(free_port()),
            "--passphrase-file", os.path.join(work, "pass"), "--epochs", "1", "--threads", "1",
            "--seed", "1", "--client-timeout", "20"] + list(args)
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout)
        return p.returncode, p.stderr, p.stdout
    except subprocess.TimeoutExpired as e:
        return "timeout", (e.stderr or b"").decode(errors="replace"), ""


def make_data(work):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    for d in ("data/X", "data/Y", "bad/X", "bad/Y"):
        os.makedirs(os.path.join(work, d))
    np.save(os.path.join(work, "data/X/x.npy"), x)
    np.save(os.path.join(work, "data/Y/y.npy"), y)
    # Two files per folder: the bad label is row 7 of the second one.
    np.save(os.path.join(work, "bad/X/a.npy"), x[:60])
    np.save(os.path.join(work, "bad/X/b.npy"), x[60:])
    np.save(os.path.join(work, "bad/Y/a.npy"), y[:60])
    yb = y[60:].copy()
    yb[7] = 5
    np.save(os.path.join(work, "bad/Y/b.npy"), yb)
    write_passphrase(work, "workflow passphrase")
    for name, shape in (("m.h5", "8"), ("m5.h5", "5")):
        subprocess.run([DDTS, "model", "new", "--layers", "dense:16:relu,dense:2:softmax",
                        "--input-shape", shape, "-o", os.path.join(work, name)], check=True,
                       stdout=subprocess.DEVNULL)
    with open(os.path.join(work, "notmodel.h5"), "w") as f:
        f.write("this is not a model\n")


def section1(work):
    cases = [
        ("not a model", ["--model", os.path.join(work, "notmodel.h5"), "--dataset",
                         os.path.join(work, "data")], ["notmodel.h5", "Keras model file"]),
        ("input does not fit", ["--model", os.path.join(work, "m5.h5"), "--dataset",
                                os.path.join(work, "data")], ["m5.h5", "(5,)", "8 values"]),
        ("label out of range", ["--model", os.path.join(work, "m.h5"), "--dataset",
                                os.path.join(work, "bad")],
         ["bad/Y/b.npy, sample 7", "label 5", "[0, 2)"]),
        ("labels do not fit the loss", ["--model", os.path.join(work, "m.h5"), "--dataset",
                                        os.path.join(work, "data"), "--loss",
                                        "categorical_crossentropy"],
         ["m.h5", "categorical_crossentropy needs 2"]),
    ]
    for i, (what, args, needles) in enumerate(cases):
        wd = os.path.join(work, "s1-%d" % i)
        t0 = time.time()
        rc, err, _ = server(work, "--clients", "2", "--data", "server", "--workdir", wd, *args,
                            timeout=25)
        check(rc == 1, "%s: server exited %s (expected 1 at once): %s" % (what, rc, err[-600:]))
        check(time.time() - t0 < 20, "%s: the server did not fail at start" % what)
        for n in needles:
            check(n in err, "%s: the error does not name %r: %s" % (what, n, err[-600:]))
        jobs = os.listdir(wd) if os.path.isdir(wd) else []
        check(not any(os.path.isdir(os.path.join(wd, j, "shards")) for j in jobs),
              "%s: the data was split into shares anyway: %s" % (what, jobs))


def start_client(work, port, name, dataset, retries=0):
    return checks.start_client(DDTS, work, port, name, retries, ["--dataset", dataset])


def serve_with_clients(work, wd, name, clients, timeout=90, extra=()):
    """`ddts server --data client` with clients [(name, dataset)]; (rc, stderr, seconds)."""
    job = run_job(DDTS, work, ["--model", os.path.join(work, "m.h5"), "--clients",
                               str(len(clients)), "--data", "client", "--threads", "1", "--seed",
                               "1", "--workdir", wd, "--name", name, "--client-timeout", "30"] +
                  list(extra), [n for n, _ in clients], timeout=timeout,
                  client_extra={n: ["--dataset", d] for n, d in clients})
    return job.rc, job.err, job.took


def section2(work):
    rng = np.random.default_rng(2)
    os.makedirs(os.path.join(work, "big/X"))
    os.makedirs(os.path.join(work, "big/Y"))
    xb = rng.normal(size=(40000, 8)).astype("float32")
    np.save(os.path.join(work, "big/X/x.npy"), xb)
    np.save(os.path.join(work, "big/Y/y.npy"), (xb[:, 0] > 0).astype("int64"))
    missing = os.path.join(work, "no-such-data")

    # One share of two fails: partial, exit 1, the reason in both summaries.
    wd = os.path.join(work, "s2a")
    rc, err, _ = serve_with_clients(work, wd, "p", [("alpha", os.path.join(work, "data")),
                                                    ("beta", missing)],
                                    extra=["--epochs", "1"])
    check(rc == 1, "partial job: server exited %s (expected 1): %s" % (rc, err[-800:]))
    check("1 of 2 shares failed" in err, "the server does not say a share failed: %s" % err[-800:])
    sj = os.path.join(wd, "p", "summary.json")
    summary = json.load(open(sj)) if os.path.exists(sj) else {}
    check(summary.get("status") == "partial", "summary.json status %r" % summary.get("status"))
    by_name = {c["name"]: c for c in summary.get("clients", [])}
    beta = by_name.get("beta", {})
    check(beta.get("state") == "failed" and "no-such-data/X" in (beta.get("error") or ""),
          "summary.json: beta's failure and reason: %r" % beta)
    check(by_name.get("alpha", {}).get("state") == "done" and "error" not in by_name.get("alpha", {}),
          "summary.json: alpha done: %r" % by_name.get("alpha"))
    txt = open(os.path.join(wd, "p", "summary.txt")).read() if os.path.exists(
        os.path.join(wd, "p", "summary.txt")) else ""
    check("Status     partial" in txt and "failed: " + missing + "/X" in txt,
          "summary.txt does not give the status and the reason:\n" + txt)
    elog = os.path.join(wd, "p", "clients", "beta", "error.log")
    text = open(elog).read() if os.path.exists(elog) else ""
    for needle in (" error: " + missing + "/X", " status: not found", " context: job p, share",
                   " settings: {"):
        check(needle in text, "uploaded error.log lacks %r:\n%s" % (needle, text))

    # The same error on two clients stops the job before the third finishes.
    wd = os.path.join(work, "s2b")
    rc, err, took = serve_with_clients(work, wd, "d", [
        ("c1", missing), ("c2", missing), ("c3", os.path.join(work, "big"))],
        extra=["--epochs", "400"])
    check(rc == 1, "deterministic failure: server exited %s (expected 1): %s" % (rc, err[-800:]))
    check("the job is stopped" in err and "failed with the same error" in err,
          "the server does not say why it stopped: %s" % err[-800:])
    print("deterministic failure: the server ended after %.1f s" % took)
    check(took < 15, "the job was not stopped early (%.0f s)" % took)
    sj = os.path.join(wd, "d", "summary.json")
    summary = json.load(open(sj)) if os.path.exists(sj) else {}
    check(summary.get("status") == "failed" and "same error" in (summary.get("error") or ""),
          "deterministic failure: summary.json %r" % {k: summary.get(k) for k in ("status", "error")})


def serve_data(work, wd, name, data, n_clients, extra, timeout=120):
    """`ddts server --data server` with n_clients clients; (rc, stderr, client logs)."""
    job = run_job(DDTS, work, data_job_args(os.path.join(work, "m.h5"), data, wd, name, n_clients,
                                            extra),
                  ["%s-c%d" % (name, i) for i in range(n_clients)], timeout=timeout)
    return job.rc, job.err, job.logs


def section2_sync(work):
    rng = np.random.default_rng(3)
    for n in (120, 121):
        d = os.path.join(work, "sync%d" % n)
        os.makedirs(os.path.join(d, "X"))
        os.makedirs(os.path.join(d, "Y"))
        x = rng.normal(size=(n, 8)).astype("float32")
        np.save(os.path.join(d, "X", "x.npy"), x)
        np.save(os.path.join(d, "Y", "y.npy"), (x[:, 0] > 0).astype("int64"))
    cases = [
        # 60 per share, 42 train after the 0.3 split: batches of 6 end exactly.
        ("step-split", 120, ["--sync", "step", "--batch-size", "6"]),
        # 60 per share, no split, batches of 6, an exchange every 2: 10 batches.
        ("steps-whole", 120, ["--sync", "steps:2", "--batch-size", "6", "--validation-split",
                              "0"]),
        # 61 and 60: uneven shares, steps:3 with the split.
        ("steps-uneven", 121, ["--sync", "steps:3", "--batch-size", "7"]),
    ]
    for tag, n, extra in cases:
        wd = os.path.join(work, "s2-" + tag)
        rc, err, logs = serve_data(work, wd, tag, os.path.join(work, "sync%d" % n), 2,
                                   ["--epochs", "2"] + extra)
        check(rc == 0, "%s: server exited %s: %s\n%s" % (tag, rc, err[-800:], logs[-800:]))
        check("n_samples >= 1" not in logs and "failed" not in logs,
              "%s: a client failed an exchange:\n%s" % (tag, logs[-1500:]))
        sj = os.path.join(wd, tag, "summary.json")
        summary = json.load(open(sj)) if os.path.exists(sj) else {}
        check(summary.get("status") == "ok", "%s: summary status %r" % (tag, summary.get("status")))


def section3(work):
    wd = os.path.join(work, "s3")
    data = os.path.join(work, "data")
    rc, err, logs = serve_data(work, wd, "r", data, 2, ["--epochs", "1"])
    check(rc == 0, "first run: server exited %s: %s" % (rc, err[-600:]))
    check(os.path.exists(os.path.join(wd, "r", "job.json")), "the job's settings are not recorded")

    # Other settings: refused at once, every difference named.
    t0 = time.time()
    rc, err, _ = server(work, "--model", os.path.join(work, "m.h5"), "--clients", "3",
                        "--epochs", "2", "--data", "server", "--dataset", data, "--workdir", wd,
                        "--name", "r", timeout=30)
    check(rc == 1 and time.time() - t0 < 20, "rerun with other settings: exit %s" % rc)
    for needle in ("job 'r'", "--epochs 1 (now 2)", "--clients 2 (now 3)", "--name", "--resume"):
        check(needle in err, "the refusal does not name %r: %s" % (needle, err[-600:]))
    # The same settings (the seed was given the first time): the finished job, as before.
    rc, err, _ = server(work, "--model", os.path.join(work, "m.h5"), "--clients", "2",
                        "--epochs", "1", "--data", "server", "--dataset", data, "--workdir", wd,
                        "--name", "r", "--seed", "1", timeout=30)
    check(rc == 0 and "resuming job 'r'" in err, "rerun with the same settings: %s %s" %
          (rc, err[-600:]))
    # --resume: the job's own settings, whatever this run says.
    rc, err, _ = server(work, "--model", os.path.join(work, "m.h5"), "--clients", "3",
                        "--epochs", "7", "--data", "server", "--dataset", data, "--workdir", wd,
                        "--name", "r", "--resume", timeout=30)
    check(rc == 0 and "resuming job 'r'" in err, "--resume: %s %s" % (rc, err[-600:]))

    # --collect: no job, several jobs, one job.
    empty = os.path.join(work, "s3-empty")
    os.makedirs(empty)
    t0 = time.time()
    rc, err, _ = server(work, "--collect", "--workdir", empty, timeout=20)
    check(rc == 1 and "holds no job" in err and time.time() - t0 < 10,
          "collect in a folder without a job: %s %s" % (rc, err[-400:]))
    check(os.listdir(empty) == [], "collect created something in an empty folder: %s" %
          os.listdir(empty))
    two = os.path.join(work, "s3-two")
    os.makedirs(two)
    subprocess.run(["cp", "-r", os.path.join(wd, "r"), os.path.join(two, "a")], check=True)
    subprocess.run(["cp", "-r", os.path.join(wd, "r"), os.path.join(two, "b")], check=True)
    rc, err, _ = server(work, "--collect", "--workdir", two, timeout=20)
    check(rc == 1 and "holds 2 jobs (a, b)" in err and "--name" in err,
          "collect with two jobs: %s %s" % (rc, err[-400:]))
    # One job: a client whose current job is another one is told it is done; its pointer stays.
    cur = os.path.join(work, "r-c0", "current")
    before = open(cur, "rb").read() if os.path.exists(cur) else None
    other = os.path.join(work, "s3-one")
    os.makedirs(other)
    subprocess.run(["cp", "-r", os.path.join(wd, "r"), os.path.join(other, "x")], check=True)
    os.remove(os.path.join(other, "x", "state"))
    with open(os.path.join(other, "x", "state"), "w") as f:  # not complete: 1 share to collect
        f.write(open(os.path.join(wd, "r", "state")).read().replace(" done ", " assigned ", 1))
    port = free_port()
    srv = subprocess.Popen([DDTS, "server", "--host", "127.0.0.1", "--port", str(port),
                            "--passphrase-file", os.path.join(work, "pass"), "--collect",
                            "--workdir", other, "--threads", "1"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_listening(port, proc=srv)
    cl = subprocess.run([DDTS, "client", "--server", "127.0.0.1:%d" % port, "--passphrase-file",
                         os.path.join(work, "pass"), "--workdir", os.path.join(work, "r-c0"),
                         "--name", "r-c0", "--threads", "1", "--retries", "0"],
                        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    srv.kill()
    _, serr = srv.communicate()
    check("job 'x'" in serr or "resuming job 'x'" in serr, "collect did not take the one job: %s" %
          serr[-600:])
    check("holds no results of this job" in serr, "the client was not turned away: %s" %
          serr[-600:])
    check("training" not in cl.stderr.lower() or "epoch" not in cl.stderr,
          "collect made a client train: %s" % cl.stderr[-600:])
    after = open(cur, "rb").read() if os.path.exists(cur) else None
    check(before is not None and before == after, "collect changed the client's current job")
    check(not os.path.exists(os.path.join(other, "job")), "collect created a new job")

    # A failed start leaves no job: the next run, with other settings, is not refused.
    busy = os.path.join(work, "s3-busy")
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    bport = s.getsockname()[1]
    p = subprocess.run([DDTS, "server", "--host", "127.0.0.1", "--port", str(bport),
                        "--passphrase-file", os.path.join(work, "pass"), "--model",
                        os.path.join(work, "m.h5"), "--clients", "2", "--epochs", "1",
                        "--dataset", data, "--workdir", busy, "--name", "b", "--seed", "1"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    s.close()
    check(p.returncode == 1 and "in use" in p.stderr, "port in use: %s" % p.stderr[-300:])
    check(not os.path.exists(os.path.join(busy, "b", "state")) and
          not os.path.exists(os.path.join(busy, "b", "job.json")),
          "a failed start left a job behind")
    rc, err, _ = serve_data(work, busy, "b", data, 3, ["--epochs", "1"])
    check(rc == 0, "the run after a failed start: %s %s" % (rc, err[-600:]))


def section6_waiting(work):
    port = free_port()
    srv = subprocess.Popen([DDTS, "server", "--host", "127.0.0.1", "--port", str(port),
                            "--passphrase-file", os.path.join(work, "pass"), "--model",
                            os.path.join(work, "m.h5"), "--clients", "2", "--epochs", "1",
                            "--dataset", os.path.join(work, "data"), "--threads", "1",
                            "--workdir", os.path.join(work, "s6w"), "--name", "w"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    wait_listening(port, proc=srv)
    cl = start_client(work, port, "lonely", "-", retries=5)
    log = ""
    end = time.time() + 20
    while time.time() < end and "waiting for" not in log:
        time.sleep(0.3)
        log = open(os.path.join(work, "lonely.err")).read()
    cl.kill()
    srv.kill()
    cl.wait()
    srv.wait()
    check("joined: waiting for a share (a job starts once every client has joined)" in log,
          "a client waiting for the others says nothing: %r" % log[-600:])


def section6_round(work):
    """A client whose round waits for a slower client says so (the slower one is stopped)."""
    import signal
    # Epochs of about a second: the slow client is stopped once it trains (only a
    # client that trains takes part in a round).
    rng = np.random.default_rng(6)
    x = rng.normal(size=(40000, 8)).astype("float32")
    for d in ("big/X", "big/Y"):
        os.makedirs(os.path.join(work, d), exist_ok=True)
    np.save(os.path.join(work, "big/X/x.npy"), x)
    np.save(os.path.join(work, "big/Y/y.npy"), (x[:, 0] > 0).astype("int64"))
    subprocess.run([DDTS, "model", "new", "--layers", "dense:256:relu,dense:256:relu,dense:2:softmax",
                    "--input-shape", "8", "-o", os.path.join(work, "big.h5")], check=True,
                   stdout=subprocess.DEVNULL)
    port = free_port()
    srv = subprocess.Popen([DDTS, "server", "--host", "127.0.0.1", "--port", str(port),
                            "--passphrase-file", os.path.join(work, "pass"), "--model",
                            os.path.join(work, "big.h5"), "--clients", "2", "--epochs", "3",
                            "--sync", "epoch", "--dataset", os.path.join(work, "big"),
                            "--threads", "1", "--seed", "1", "--client-timeout", "30",
                            "--workdir", os.path.join(work, "s6r"), "--name", "r"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    wait_listening(port, proc=srv)
    fast = start_client(work, port, "fast", "-")
    slow = start_client(work, port, "slow", "-")
    end = time.time() + 30
    stopped = False
    while time.time() < end:
        if "Epoch 1/3" in open(os.path.join(work, "slow.err")).read():
            slow.send_signal(signal.SIGSTOP)
            stopped = True
            break
        time.sleep(0.05)
    log = ""
    end = time.time() + 10
    while stopped and time.time() < end and "waiting for the other clients" not in log:
        time.sleep(0.2)
        log = open(os.path.join(work, "fast.err")).read()
    if stopped:
        slow.send_signal(signal.SIGCONT)
    try:
        srv.wait(timeout=90)
    except subprocess.TimeoutExpired:
        srv.kill()
        srv.wait()
    for p in (fast, slow):
        stop(p, 30)
    check(stopped, "the slow client never trained")
    check(": sent; waiting for the other clients" in log,
          "a client waiting for a round says nothing: %r" % log[-600:])
    check(srv.returncode == 0, "the job with a stopped client did not finish: %s" % srv.returncode)


def section6(work):
    port = free_port()  # nothing listens there
    cl = subprocess.run([DDTS, "client", "--server", "127.0.0.1:%d" % port, "--passphrase-file",
                         os.path.join(work, "pass"), "--workdir", os.path.join(work, "c-lone"),
                         "--retries", "0"], stdin=subprocess.DEVNULL, capture_output=True,
                        text=True, timeout=60)
    check(cl.returncode == 1, "client without a server exited %s" % cl.returncode)
    check("kept in " + os.path.join(work, "c-lone") in cl.stderr and
          "ddts server --collect --workdir" in cl.stderr,
          "the client does not say where its results are and how to collect them: %s" %
          cl.stderr[-600:])
    src = os.environ.get("DDTS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
    out = subprocess.run([DDTS, "inspect", os.path.join(src, "tests/data/keras/tf2_sequential.h5")],
                         capture_output=True, text=True, timeout=60).stdout
    lines = out.split("\n")
    head = [l for l in lines if "Output Shape" in l]
    rows = [l for l in lines if "(None" in l]
    check(len(head) == 1 and len(rows) == 4, "inspect table: %r" % out)
    if head and rows:
        col = head[0].index("Output Shape")
        pcol = head[0].index("Param #")
        for r in rows:
            check(r.index("(None") == col and r[pcol - 1] == " " and r[pcol].isdigit(),
                  "inspect row not aligned with its header:\n%s\n%s" % (head[0], r))


def section6_metrics(work):
    model = os.path.join(work, "mnist.h5")
    subprocess.run([DDTS, "model", "new", "--layers", "dense:16:relu,dense:10:softmax",
                    "--input-shape", "784", "-o", model],
                   check=True, stdout=subprocess.DEVNULL)
    wd = os.path.join(work, "s6")
    port = free_port()
    srv = subprocess.Popen([DDTS, "server", "--host", "127.0.0.1", "--port", str(port),
                            "--passphrase-file", os.path.join(work, "pass"), "--model", model,
                            "--clients", "1", "--epochs", "1", "--data", "keras",
                            "--keras-dataset", "fashion_mnist", "--samples", "600", "--threads", "1",
                            "--metrics", "accuracy,mae",
                            "--seed", "1", "--workdir", wd, "--name", "mt"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    wait_listening(port, proc=srv)  # Fashion-MNIST loads first
    cl = start_client(work, port, "mt-c", "-", retries=20)
    try:
        _, err = srv.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        srv.kill()
        _, err = srv.communicate()
    stop(cl, 30)
    sj = os.path.join(wd, "mt", "summary.json")
    summary = json.load(open(sj)) if os.path.exists(sj) else {}
    final = summary.get("global", {}).get("final", {})
    for k in ("test_loss", "test_accuracy", "test_mae"):
        check(isinstance(final.get(k), float), "global %s missing: %r (%s)" % (k, final, err[-400:]))
    cfinal = (summary.get("clients") or [{}])[0].get("final", {})
    for k in ("mae", "val_mae", "accuracy", "loss"):
        check(k in cfinal, "client metric %s missing: %r" % (k, cfinal))


def main():
    work = tempfile.mkdtemp(prefix="ddts-test_workflow-")
    make_data(work)
    section1(work)
    section2(work)
    section2_sync(work)
    section3(work)
    section6_waiting(work)
    section6_round(work)
    section6(work)
    section6_metrics(work)
    return 0 if check.finish("test_workflow", work) else 1


if __name__ == "__main__":
    sys.exit(main())
