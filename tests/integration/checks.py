"""Shared by the Python integration tests (and bench/dash_pollers.py): counted checks,
a free loopback port, real clients and whole server+clients jobs.

    from checks import Checks, free_port, wait_listening, start_client, run_job
    check = Checks()
    check(cond, "what went wrong")   # counts; prints FAIL: ... when cond is false
    ... check.passed, check.failed
    check.finish("test_x", work, t_start)   # prints the counts, removes work if all passed

    write_passphrase(work, "phrase")         # work/pass, mode 0600
    job = run_job(DDTS, work, data_job_args(model, data, wd, "name", extra=[...]),
                  ("c0", "c1"))              # job.rc, job.err, job.logs, job.took
    make_mlp_job(DDTS, work, 16000, "phrase")   # the dashboard tests' data, pass, m.h5
    srv = start_server(mlp_job_argv(DDTS, work, port, wd, "name", epochs), err_path)
"""
import os
import shutil
import socket
import subprocess
import time


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def __call__(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL:", what, flush=True)
        return cond

    def finish(self, name, work=None, t_start=None):
        """Prints the counts; removes `work` (if any: a TemporaryDirectory
        removes itself) when every check passed, unless DDTS_KEEP_WORK is set.
        True when every check passed and some ran: a test that ran no check
        fails."""
        took = " (%.1f s)" % (time.monotonic() - t_start) if t_start is not None else ""
        print("%s: %d passed, %d failed%s" % (name, self.passed, self.failed, took), flush=True)
        if work is None:
            pass
        elif self.failed == 0 and not os.environ.get("DDTS_KEEP_WORK"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("work folder kept:", work)
        return self.failed == 0 and self.passed > 0


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_listening(port, timeout=60.0, proc=None):
    """Waits until something listens on TCP `port`, read from /proc/net/tcp
    (a probing connection would count as a failed handshake at a ddts
    server); False after `timeout` s, or as soon as `proc` has exited."""
    want = ":%04X" % port
    end = time.time() + timeout
    while time.time() < end:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as f:
                    next(f)
                    for line in f:
                        cols = line.split()
                        if cols[1].endswith(want) and cols[3] == "0A":  # 0A: LISTEN
                            return True
            except OSError:
                pass
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def write_passphrase(work, phrase):
    """Writes `phrase` to work/pass, readable by its owner only (as ddts requires)."""
    fd = os.open(os.path.join(work, "pass"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(phrase + "\n")
    os.chmod(os.path.join(work, "pass"), 0o600)


def start_client(ddts, work, port, name, retries=0, extra=()):
    """A real `ddts client` of the server at 127.0.0.1:port, named `name`, in
    work/name, with the passphrase in work/pass and the further arguments
    `extra`; its stdout and stderr in work/name.err."""
    log = open(os.path.join(work, name + ".err"), "w")
    return subprocess.Popen(
        [ddts, "client", "--server", "127.0.0.1:%d" % port, "--passphrase-file",
         os.path.join(work, "pass"), "--workdir", os.path.join(work, name), "--name", name,
         "--threads", "1", "--retries", str(retries)] + list(extra),
        stdin=subprocess.DEVNULL, stdout=log, stderr=log)


def stop(proc, timeout):
    """Waits up to `timeout` s for `proc`, then kills it; its exit status, or
    "timeout" when it had to be killed."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return "timeout"


class Job:
    """What run_job saw: rc (the server's exit status, or "timeout"), err (its
    stderr), logs (the clients' logs, one after the other), took (seconds from
    the clients' start to the server's end)."""

    def __init__(self, rc, err, logs, took):
        self.rc, self.err, self.logs, self.took = rc, err, logs, took


def data_job_args(model, data, workdir, name, clients=2, extra=()):
    """run_job's server arguments for a job on `data` that the server splits
    (--data server) among `clients` clients: 1 thread, seed 1, a client lost
    after 30 s of silence; `extra` appended (--epochs, --batch-size, ...)."""
    return ["--model", model, "--clients", str(clients), "--data", "server", "--dataset", data,
            "--threads", "1", "--seed", "1", "--workdir", workdir, "--name", name,
            "--client-timeout", "30"] + list(extra)


def run_job(ddts, work, server_args, clients, timeout=100, retries=0, client_extra=None):
    """Runs a whole job on 127.0.0.1: `ddts server --host 127.0.0.1 --port P
    --passphrase-file work/pass` with `server_args`, waits until it listens (it
    checks the model and data first), starts the named clients (start_client,
    with client_extra[name] or the default [] as extra arguments), waits up to
    `timeout` s for the server (killed after), then up to 30 s for each client.
    Returns a Job."""
    port = free_port()
    srv = subprocess.Popen(
        [ddts, "server", "--host", "127.0.0.1", "--port", str(port), "--passphrase-file",
         os.path.join(work, "pass")] + list(server_args),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_listening(port, proc=srv)
    extra = client_extra or {}
    procs = [start_client(ddts, work, port, n, retries, extra.get(n, ())) for n in clients]
    t0 = time.monotonic()
    try:
        _, err = srv.communicate(timeout=timeout)
        rc = srv.returncode
    except subprocess.TimeoutExpired:
        srv.kill()
        _, err = srv.communicate()
        rc = "timeout"
    took = time.monotonic() - t0
    for p in procs:
        stop(p, 30)
    logs = ""
    for n in clients:
        with open(os.path.join(work, n + ".err"), errors="replace") as f:
            logs += f.read()
    return Job(rc, err, logs, took)


def make_mlp_job(ddts, work, samples, phrase):
    """The job of the dashboard and live-view tests and bench/dash_pollers.py:
    work/data (X/x.npy: `samples` rows of 8 normal features, seed 1; Y/y.npy:
    3 classes), the passphrase `phrase` in work/pass and work/m.h5, an MLP
    8-256-256-3 (`ddts model new`)."""
    import numpy as np  # here: most users of this module need no numpy

    rng = np.random.default_rng(1)
    os.makedirs(os.path.join(work, "data", "X"))
    os.makedirs(os.path.join(work, "data", "Y"))
    x = rng.normal(size=(samples, 8)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64") + (x[:, 2] > 1)
    np.save(os.path.join(work, "data", "X", "x.npy"), x)
    np.save(os.path.join(work, "data", "Y", "y.npy"), y)
    write_passphrase(work, phrase)
    subprocess.run([ddts, "model", "new", "--layers",
                    "dense:256:relu,dense:256:relu,dense:3:softmax", "--input-shape", "8", "-o",
                    os.path.join(work, "m.h5")], check=True, stdout=subprocess.DEVNULL)


def mlp_job_argv(ddts, work, port, workdir, name, epochs, extra=()):
    """The `ddts server` command line of make_mlp_job's job on 127.0.0.1:port:
    2 clients, `epochs` epochs, batches of 16, the data on the server, seed 3,
    1 thread; `extra` appended (--dashboard, --sync, ...)."""
    return [ddts, "server", "--host", "127.0.0.1", "--port", str(port), "--passphrase-file",
            os.path.join(work, "pass"), "--model", os.path.join(work, "m.h5"), "--clients", "2",
            "--epochs", str(epochs), "--batch-size", "16", "--data", "server", "--dataset",
            os.path.join(work, "data"), "--seed", "3", "--threads", "1", "--workdir", workdir,
            "--name", name] + list(extra)


def start_server(argv, err_path):
    """Starts the server command line `argv`, its stderr in the file err_path."""
    with open(err_path, "w") as err:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err)
