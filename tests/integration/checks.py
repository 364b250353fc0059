"""Shared by the Python integration tests: counted checks and a free loopback port.

    from checks import Checks, free_port
    check = Checks()
    check(cond, "what went wrong")   # counts; prints FAIL: ... when cond is false
    ... check.passed, check.failed
"""
import socket


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
