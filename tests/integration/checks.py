"""Shared by the Python integration tests: counted checks and a free loopback port.

    from checks import Checks, free_port, wait_listening
    check = Checks()
    check(cond, "what went wrong")   # counts; prints FAIL: ... when cond is false
    ... check.passed, check.failed
"""
import socket
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
