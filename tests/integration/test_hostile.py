"""Hostile peers against a real `ddts server` process on 127.0.0.1.

A small Fashion-MNIST job (3 shares, --sync none) runs while raw sockets
misbehave: a frame header announcing an oversized length, a truncated frame
that stalls and one that is cut, garbage, an empty frame, a replay of the
bytes a real client sent (recorded by a relay in front of the server), and a
real client behind a relay that stops reading once the handshake is done, so
that the server's writes of its share block. Each hostile connection must be
closed by the server within --io-timeout (2 s here), the server log must name
each failure, and the job must complete with the two real clients (one of
them takes over the dropped client's share), every result collected. Failed
handshakes count against 127.0.0.1, where the real clients come from too, so
--ban-after is high here (the ban itself is tested in test_cluster.sh and the
unit tests).

Run by CTest with env DDTS (the program) and DDTS_SOURCE_DIR.
"""
import os
import random
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks, free_port, start_client  # noqa: E402

DDTS = os.environ["DDTS"]
SRC = os.environ["DDTS_SOURCE_DIR"]
IO_TIMEOUT = 2.0
CLIENT_TIMEOUT = 4
check = Checks()


def wait_closed(sock, limit):
    """Reads and discards until the peer closes; the seconds it took, None after `limit`."""
    t0 = time.monotonic()
    sock.setblocking(False)
    while True:
        left = limit - (time.monotonic() - t0)
        if left <= 0:
            return None
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            continue
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - t0
        except BlockingIOError:
            continue
        if not data:
            return time.monotonic() - t0


def hello_c():
    """A well-formed HELLO_C message: type 0x01, "DDTS", u16 version 1, nonce[16]."""
    return b"\x01DDTS" + struct.pack("<H", 1) + os.urandom(16)


def frame(body):
    return struct.pack("<I", len(body)) + body


class Server:
    def __init__(self, work, port):
        self.err_path = os.path.join(work, "server.err")
        self.out = open(os.path.join(work, "server.out"), "w")
        self.err = open(self.err_path, "w")
        args = [DDTS, "server", "--host", "127.0.0.1", "--port", str(port),
                "--passphrase-file", os.path.join(work, "pass"),
                "--model", os.path.join(work, "mlp.h5"), "--clients", "3", "--epochs", "1",
                "--batch-size", "64", "--data", "keras", "--keras-dataset", "fashion_mnist",
                "--samples", "18000", "--sync", "none", "--seed", "3", "--threads", "1",
                "--workdir", os.path.join(work, "server"), "--name", "job1",
                "--client-timeout", str(CLIENT_TIMEOUT), "--io-timeout", str(int(IO_TIMEOUT)),
                "--ban-after", "1000"]
        self.proc = subprocess.Popen(args, stdout=self.out, stderr=self.err)

    def log(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()

    def wait_log(self, text, limit, start=0):
        """Waits until `text` appears in the log after offset `start`; its offset or -1."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            i = self.log().find(text, start)
            if i >= 0:
                return i
            if self.proc.poll() is not None:
                return -1
            time.sleep(0.05)
        return -1


class Relay:
    """A TCP relay in front of the server for one connection.

    Records every byte the client sends. With `stall`, forwards only the
    first two server frames (HELLO_S, SHARE_S: the handshake) and then never
    reads from the server again: a client that stops reading.
    """

    def __init__(self, port, stall=False):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.port = self.lsock.getsockname()[1]
        self.server_port = port
        self.stall = stall
        self.recorded = bytearray()
        self.lock = threading.Lock()
        self.up = None
        self.stalled = threading.Event()
        self.done = threading.Event()
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        try:
            down, _ = self.lsock.accept()
        except OSError:
            return
        up = socket.socket()
        if self.stall:
            # A small receive window: the server's sends block as soon as its own
            # send buffer is full.
            up.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        up.connect(("127.0.0.1", self.server_port))
        self.up = up
        from_server = bytearray()
        frames_left = 2
        socks = [down, up]
        while socks:
            r, _, _ = select.select(socks, [], [], 0.2)
            for s in r:
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if s is down:
                    if not data:
                        socks = []
                        break
                    with self.lock:
                        self.recorded += data
                    up.sendall(data)
                    continue
                if not data:
                    socks = []
                    break
                if not self.stall:
                    down.sendall(data)
                    continue
                # Forward whole handshake frames only, then stop reading.
                from_server += data
                while frames_left > 0 and len(from_server) >= 4:
                    n = struct.unpack("<I", from_server[:4])[0]
                    if len(from_server) < 4 + n:
                        break
                    down.sendall(bytes(from_server[:4 + n]))
                    del from_server[:4 + n]
                    frames_left -= 1
                if frames_left == 0:
                    socks = [down]
                    self.stalled.set()
        self.done.set()
        down.close()
        if not self.stall:
            up.close()

    def record(self):
        with self.lock:
            return bytes(self.recorded)


def hostile_raw(srv, port, name, payload, expect_log, close_within, stall=True):
    """Connects, sends `payload`, then waits for the server to close.

    Checks that the connection is closed within `close_within` seconds and
    that the server log gets `expect_log` (a handshake failure naming the
    address). With stall=False, the peer closes its side after sending.
    """
    start = len(srv.log())
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    t0 = time.monotonic()
    if payload:
        s.sendall(payload)
    if not stall:
        s.shutdown(socket.SHUT_WR)
    took = wait_closed(s, close_within + 3)
    s.close()
    check(took is not None and took <= close_within,
          "%s: closed after %s s (limit %.1f s)" % (name, took, close_within))
    at = srv.wait_log(expect_log, 3, start)
    check(at >= 0, "%s: server log lacks %r: %s" % (name, expect_log, srv.log()[start:]))
    log = srv.log()
    line = log[log.rfind("\n", 0, at) + 1:].split("\n", 1)[0] if at >= 0 else ""
    check("127.0.0.1" in line, "%s: the log line names no address: %r" % (name, line))
    print("%s: closed after %.2f s; log: %s" % (name, took or -1, line.strip()), flush=True)
    return time.monotonic() - t0


def main():
    work = tempfile.mkdtemp(prefix="ddts-test_hostile-")
    procs = []
    srv = None
    t_start = time.monotonic()
    try:
        with open(os.path.join(work, "pass"), "w") as f:
            f.write("correct horse battery staple\n")
        os.chmod(os.path.join(work, "pass"), 0o600)
        r = subprocess.run([DDTS, "model", "new", os.path.join(SRC, "examples/fashion_mlp.json"),
                            "-o", os.path.join(work, "mlp.h5")], capture_output=True, text=True)
        if not check(r.returncode == 0, "model new: " + r.stderr):
            return
        port = free_port()
        srv = Server(work, port)
        procs.append(srv.proc)
        if not check(srv.wait_log("waiting for", 120) >= 0, "server did not start: " + srv.log()):
            return
        fast = 1.5  # an immediate refusal, with slack for a loaded machine (< --io-timeout)

        # (a) Oversized lengths: refused from the header, before any read or allocation.
        hostile_raw(srv, port, "oversized length", struct.pack("<I", 1025), "frame of 1025 bytes",
                    fast)
        hostile_raw(srv, port, "huge length", struct.pack("<I", 0xFFFFFFFF) + b"x" * 64,
                    "frame of 4294967295 bytes", fast)
        # (b) Truncated frames: one that stalls (closed at the I/O timeout), one cut short.
        took = hostile_raw(srv, port, "truncated, stalled", struct.pack("<I", 100) + b"\x01DDTS",
                           "no progress: not authenticated", IO_TIMEOUT + 1.5)
        check(took >= IO_TIMEOUT - 0.2, "stalled peer closed before the timeout: %.2f s" % took)
        hostile_raw(srv, port, "truncated, cut", struct.pack("<I", 100) + b"\x01DDTS",
                    "in the middle of a frame", fast, stall=False)
        # A correct HELLO_C, then silence: the server waits for SHARE_C only up to the timeout.
        hostile_raw(srv, port, "hello then silence", frame(hello_c()), "no progress: not authenticated",
                    IO_TIMEOUT + 1.5)
        # (c) Garbage: random bytes; a frame of random body; an empty frame; a bad magic.
        rnd = random.Random(6)
        garbage = bytes(rnd.getrandbits(8) for _ in range(4096))
        garbage = b"\xff" + garbage[1:]  # a length far beyond 1 KiB
        hostile_raw(srv, port, "garbage", garbage, "bytes (max 1024)", fast)
        hostile_raw(srv, port, "garbage frame", frame(b"\x7f" + garbage[:200]),
                    "expected HELLO_C", fast)
        hostile_raw(srv, port, "empty frame", struct.pack("<I", 0), "empty frame", fast)
        hostile_raw(srv, port, "bad magic", frame(b"\x01XXXX" + b"\x01\x00" + bytes(16)),
                    "bad magic", fast)

        # The first real client, through a relay that records what it sends.
        rec = Relay(port)
        c1 = start_client(DDTS, work, rec.port, "client-1")
        procs.append(c1)
        check(srv.wait_log("client 'client-1' joined", 60) >= 0,
              "client-1 did not join: " + srv.log())
        # (d) Replay what it sent (hello, share, confirmation, encrypted JOIN) on a new
        # connection: the server's fresh session id makes the key confirmation fail.
        time.sleep(0.3)
        recorded = rec.record()
        # Handshake frames: 27 + 37 + 61 bytes; then at least the encrypted JOIN.
        check(len(recorded) > 125 + 40, "recorded only %d bytes" % len(recorded))
        hostile_raw(srv, port, "replayed connection", recorded,
                    "authentication failed", fast)

        # (e) A real client behind a relay that stops reading after the handshake. It joins
        # and takes share 1; client-2 joins and takes share 2, the job starts, and the
        # server's sends of share 1 (model and about 13 MB of data) block: the server must
        # drop that client after --io-timeout while the two others get their shares.
        stall = Relay(port, stall=True)
        start = len(srv.log())
        c_stall = start_client(DDTS, work, stall.port, "stalled")
        procs.append(c_stall)
        check(srv.wait_log("client 'stalled' joined", 30, start) >= 0,
              "the stalled client did not join: " + srv.log()[start:])
        c2 = start_client(DDTS, work, port, "client-2")
        procs.append(c2)
        check(srv.wait_log("share 1 -> client 'stalled'", 30, start) >= 0,
              "the stalled client got no share: " + srv.log()[start:])
        t0 = time.monotonic()
        at = srv.wait_log("client 'stalled' (127.0.0.1): 127.0.0.1: no progress for",
                          IO_TIMEOUT + 20, start)
        took = time.monotonic() - t0
        check(at >= 0, "the server did not drop the client that stops reading: " +
              srv.log()[start:])
        print("stops reading: dropped after %.2f s" % took, flush=True)
        # Meanwhile both real clients got their JOB (the server's thread for the stalled
        # one blocks only that connection).
        for name in ("client-1", "client-2"):
            with open(os.path.join(work, name + ".err"), errors="replace") as f:
                log_c = f.read()
            check("job 'job1': share " in log_c and " of 3" in log_c,
                  "%s got no job while another client stalled: %s" % (name, log_c))
        # The server's side is gone: draining the relay's upstream socket ends in EOF/reset.
        if check(stall.up is not None, "the relay did not connect"):
            check(wait_closed(stall.up, 10) is not None,
                  "the stalled connection is still open on the server")
        c_stall.kill()
        c_stall.wait()

        # The stalled client's share goes to whichever real client asks first.
        for name, p in (("client-1", c1), ("client-2", c2)):
            try:
                rc = p.wait(120)
            except subprocess.TimeoutExpired:
                rc = "timeout"
            with open(os.path.join(work, name + ".err"), errors="replace") as f:
                check(rc == 0, "%s exited %s: %s" % (name, rc, f.read()[-2000:]))
        try:
            rc = srv.proc.wait(120)
        except subprocess.TimeoutExpired:
            rc = "timeout"
        log = srv.log()
        check(rc == 0, "server exited %s: %s" % (rc, log[-3000:]))
        check("share 1: reassigned from 'stalled' to 'client-" in log,
              "share 1 was not reassigned: " + log)
        check("every share's results are received" in log, "results not all received")
        job = os.path.join(work, "server", "job1")
        names = sorted(os.listdir(os.path.join(job, "clients")))
        check(len(names) == 3 and "client-1" in names and "client-2" in names,
              "results folders: %s" % names)
        for name in names:
            for f in ("model.h5", "history.csv", "train.log"):
                p = os.path.join(job, "clients", name, f)
                check(os.path.isfile(p) and os.path.getsize(p) > 0, "%s: %s not collected" %
                      (name, f))
        print("server log:\n" + log, flush=True)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        ok = check.finish("test_hostile", work, t_start)
    return ok


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
