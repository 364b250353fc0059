"""Shared by the Python integration tests: counted checks and a free loopback port.

    from checks import Checks, free_port, wait_listening, start_client
    check = Checks()
    check(cond, "what went wrong")   # counts; prints FAIL: ... when cond is false
    ... check.passed, check.failed
    check.finish("test_x", work, t_start)   # prints the counts, removes work if all passed
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

    def finish(self, name, work, t_start=None):
        """Prints the counts; removes `work` when every check passed (unless
        DDTS_KEEP_WORK is set). True when every check passed and some ran."""
        took = " (%.1f s)" % (time.monotonic() - t_start) if t_start is not None else ""
        print("%s: %d passed, %d failed%s" % (name, self.passed, self.failed, took), flush=True)
        if self.failed == 0 and not os.environ.get("DDTS_KEEP_WORK"):
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


def start_client(ddts, work, port, name, retries=0):
    """A real `ddts client` of the server at 127.0.0.1:port, named `name`, in
    work/name, with the passphrase in work/pass; its stderr in work/name.err."""
    err = open(os.path.join(work, name + ".err"), "w")
    return subprocess.Popen(
        [ddts, "client", "--server", "127.0.0.1:%d" % port, "--passphrase-file",
         os.path.join(work, "pass"), "--workdir", os.path.join(work, name), "--name", name,
         "--threads", "1", "--retries", str(retries)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
