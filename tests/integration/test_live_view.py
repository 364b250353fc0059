#!/usr/bin/python3
"""The server's live view with real processes on 127.0.0.1 (issue 8).

A small job (16000 samples of 8 features, an MLP, 5 epochs: long enough for
several redraws while the clients train) runs twice
with two real clients, `alpha` and `a-client-with-a-long-name`:

1. `ddts server` under a pseudo-terminal (80 x 24, TERM=xterm): the table of
   clients is drawn and redrawn in place (cursor up + clear), its header has
   the EPOCH and PROG columns, both clients appear (the long name cut in the
   middle), a frame shows a client training with its epoch and progress, the
   last frame shows every client done with epoch 5/5 at 100%,
   and no table line is wider than 79 columns.
2. The same with stderr in a file: no escape sequences, and one plain log
   line per client per epoch end ("client 'alpha' (127.0.0.1): epoch 2/5 -
   loss ...").
"""
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks, free_port, make_mlp_job, mlp_job_argv, start_server  # noqa: E402

DDTS = os.path.abspath(os.environ.get("DDTS", "build/ddts"))
NAMES = ["alpha", "a-client-with-a-long-name"]
check = Checks()


def server_argv(work, tag, port):
    return mlp_job_argv(DDTS, work, port, os.path.join(work, tag), "live", 5,
                        ["--client-timeout", "30"])


def start_clients(work, tag, port):
    procs = []
    for name in NAMES:
        log = open(os.path.join(work, "%s-%s.err" % (tag, name)), "w")
        procs.append(subprocess.Popen(
            [DDTS, "client", "--server", "127.0.0.1:%d" % port, "--passphrase-file",
             os.path.join(work, "pass"), "--workdir", os.path.join(work, tag + "-" + name),
             "--name", name, "--threads", "1", "--retries", "0"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log))
    return procs


def wait_clients(procs, deadline):
    for p in procs:
        try:
            rc = p.wait(timeout=max(1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            rc = "timeout"
        check(rc == 0, "a client exited %s" % rc)


def run_tty(work):
    """The server under a pty; returns its whole output and exit status."""
    port = free_port()
    pid, fd = pty.fork()
    if pid == 0:
        env = dict(os.environ)
        env["TERM"] = "xterm"
        env["NO_COLOR"] = "1"
        env.pop("DDTS_PASSPHRASE", None)
        try:
            argv = server_argv(work, "tty", port)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    out = b""
    procs = []
    deadline = time.time() + 60
    status = None
    while time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            out += chunk
        if not procs and b"waiting for 2 clients" in out:
            procs = start_clients(work, "tty", port)
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
            # Drain what is left in the pty.
            while select.select([fd], [], [], 0.2)[0]:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            break
    # EOF on the pty: the server closed it, exiting.
    while status is None and time.time() < deadline:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
        else:
            time.sleep(0.05)
    if status is None:
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        check(False, "the server under a pty did not finish in time")
    wait_clients(procs, deadline)
    return out.decode("utf-8", "replace"), status


def main():
    work = tempfile.mkdtemp(prefix="ddts-test_live_view-")
    make_mlp_job(DDTS, work, 16000, "live view passphrase")

    # 1. On a terminal: the table, redrawn in place.
    text, status = run_tty(work)
    check(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0,
          "server under a pty: status %r; output:\n%s" % (status, text[-3000:]))
    redraws = re.findall(r"\x1b\[(\d+)A\r\x1b\[J", text)
    check(len(redraws) >= 2, "the table was not redrawn in place (%d cursor-up)" % len(redraws))
    # Each frame: what a terminal shows after the escape sequences.
    plain = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "\n", text).replace("\r", "")
    lines = plain.split("\n")
    headers = [l for l in lines if l.startswith("NAME ")]
    check(len(headers) >= 2, "no table header in the output:\n%s" % plain[-3000:])
    for h in headers[:1]:
        for col in ("ADDRESS", "STATE", "FOLD", "EPOCH", "PROG", "LOSS", "ACC", "SMP/S", "ETA"):
            check(col in h.split(), "header without %s: %r" % (col, h))
    rows = [l for l in lines if re.match(r"^(alpha|a-cl~-name) ", l)]
    check(any(l.startswith("alpha ") for l in rows), "no row for alpha")
    check(any(l.startswith("a-cl~-name ") for l in rows),
          "no row for the long name, cut in the middle")
    check(all(len(l) <= 79 for l in headers + rows),
          "a table line is wider than 79 columns: %r" % max(headers + rows, key=len))
    check(any(re.search(r" training +- +[1-5]/5 +\d+% \d", l) for l in rows),
          "no row showed a client training with its progress")
    # The last frame: both clients done, epoch 5/5, 100% of the epoch.
    last = {}
    for l in rows:
        last[l.split()[0]] = l
    for name in ("alpha", "a-cl~-name"):
        l = last.get(name, "")
        f = l.split()
        check(len(f) >= 10 and f[1] == "127.0.0.1" and f[2] == "done" and f[4] == "5/5"
              and f[5] == "100%", "last row of %s: %r" % (name, l))
    check("job 'live' complete" in plain, "the log lines did not go on below the table")

    # 2. Without a terminal: plain lines, one per client per epoch end.
    port = free_port()
    err_path = os.path.join(work, "plain.err")
    server = start_server(server_argv(work, "plain", port), err_path)
    deadline = time.time() + 60
    while time.time() < deadline and server.poll() is None:
        with open(err_path) as f:
            if "waiting for 2 clients" in f.read():
                break
        time.sleep(0.05)
    procs = start_clients(work, "plain", port)
    wait_clients(procs, deadline)
    try:
        rc = server.wait(timeout=max(1, deadline - time.time()))
    except subprocess.TimeoutExpired:
        server.kill()
        rc = "timeout"
    with open(err_path) as f:
        log = f.read()
    check(rc == 0, "plain server exited %s: %s" % (rc, log[-2000:]))
    check("\x1b" not in log, "escape sequences without a terminal")
    for name in NAMES:
        for e in (1, 2, 3, 4, 5):
            pat = r"client '%s' \(127\.0\.0\.1\): epoch %d/5 - loss \d+\.\d{4} - accuracy " \
                  r"\d\.\d{4} - \d+ samples/s - ETA \S+\n" % (re.escape(name), e)
            n = len(re.findall(pat, log))
            check(n == 1, "%d lines for %s epoch %d (expected 1):\n%s" % (n, name, e, log))
    check("joined from 127.0.0.1" in log, "the usual event lines are gone")

    return 0 if check.finish("test_live_view", work) else 1


if __name__ == "__main__":
    sys.exit(main())
