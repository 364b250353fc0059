#!/usr/bin/python3
"""The server's wizard driven through a pseudo-terminal, end to end.

Runs `ddts wizard` (the questions `ddts server` asks when stdin is a terminal)
under a pty, answers every question (one answer missing, one wrong), and
checks: the questions come in the original order with defaults in brackets,
numeric answers are accepted, invalid answers are explained and asked again,
the passphrase is not echoed, the equivalent command line is printed, and the
job file and the passphrase file (mode 0600) hold what was answered.
"""
import json
import os
import pty
import select
import shutil
import stat
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks  # noqa: E402

DDTS = os.path.abspath(os.environ.get("DDTS", "build/ddts"))
PASSPHRASE = "correct horse battery"
check = Checks()



class Pty:
    def __init__(self, argv, cwd):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.chdir(cwd)
            env = dict(os.environ)
            env.pop("DDTS_PASSPHRASE", None)
            env["NO_COLOR"] = "1"
            try:
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.transcript = ""
        self.seen = 0

    def expect(self, text, timeout=10):
        """Waits until `text` appears after what was matched before."""
        end = time.time() + timeout
        while True:
            at = self.transcript.find(text, self.seen)
            if at >= 0:
                self.seen = at + len(text)
                return True
            left = end - time.time()
            if left <= 0:
                print("timeout waiting for %r; transcript so far:\n%s" % (text, self.transcript))
                return False
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:
                    data = b""
                if not data:
                    print("EOF waiting for %r; transcript:\n%s" % (text, self.transcript))
                    return False
                self.transcript += data.decode("utf-8", "replace")

    def send(self, line):
        os.write(self.fd, (line + "\n").encode())

    def wait(self, timeout=10):
        end = time.time() + timeout
        while time.time() < end:
            try:
                r, _, _ = select.select([self.fd], [], [], 0.1)
                if r:
                    data = os.read(self.fd, 4096)
                    if data:
                        self.transcript += data.decode("utf-8", "replace")
            except OSError:
                pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid != 0:
                try:
                    while True:
                        data = os.read(self.fd, 4096)
                        if not data:
                            break
                        self.transcript += data.decode("utf-8", "replace")
                except OSError:
                    pass
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        return -9


def dialogue(work):
    """The full wizard: every question, one wrong answer, one empty answer."""
    os.mkdir(os.path.join(work, "model"))
    src = os.environ.get("DDTS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
    shutil.copy(os.path.join(src, "tests", "data", "keras", "nested.keras"),
                os.path.join(work, "model", "b_cnn.keras"))
    shutil.copy(os.path.join(src, "tests", "data", "keras", "tf2_sequential.h5"),
                os.path.join(work, "model", "a_mlp.h5"))
    open(os.path.join(work, "model", "notes.txt"), "w").close()
    p = Pty([DDTS, "wizard", "--job-out", "job.json"], work)
    # Order of questions, answers, and what must be printed in between.
    check(p.expect("Address to listen on [0.0.0.0]: "), "address question")
    p.send("")
    check(p.expect("Port [7878]: "), "port question")
    p.send("9000")
    check(p.expect("Train a model (y) or collect the results of an earlier job (n)? [y]: "),
          "train-or-collect question")
    p.send("maybe")
    check(p.expect("invalid answer: --collect: 'maybe' is not y/n"), "bad y/n explained")
    check(p.expect("[y]: "), "train-or-collect asked again")
    p.send("y")
    check(p.expect("Passphrase (not echoed; clients need the same): "), "passphrase question")
    p.send("short")
    check(p.expect("use at least 8 characters"), "short passphrase refused")
    check(p.expect("Passphrase (not echoed; clients need the same): "), "passphrase asked again")
    p.send(PASSPHRASE)
    check(p.expect("Passphrase again: "), "passphrase confirmation")
    p.send(PASSPHRASE)
    check(p.expect("Model files found:\r\n  1) model/a_mlp.h5\r\n  2) model/b_cnn.keras\r\n"),
          "model files listed, sorted, only *.h5/*.keras")
    check(p.expect("Model (number or path) [1]: "), "model question")
    p.send("model/notes.txt")
    check(p.expect("invalid answer: model/notes.txt: neither an HDF5"),
          "a file that is not a model is refused when given")
    check(p.expect("Model (number or path) [1]: "), "model asked again")
    p.send("2")
    check(p.expect("Number of clients: "), "clients question")
    p.send("")
    check(p.expect("an answer is required (--clients)"), "empty required answer refused")
    check(p.expect("Number of clients: "), "clients asked again")
    p.send("3")
    check(p.expect("Epochs [10]: "), "epochs question with default")
    p.send("ten")
    check(p.expect("invalid answer: --epochs: 'ten' is not an integer in [1, 1000000]"),
          "wrong epochs explained")
    check(p.expect("Epochs [10]: "), "epochs asked again")
    p.send("12")
    check(p.expect("Batch size [32]: "), "batch size question")
    p.send("")
    check(p.expect("[the model's, else adam]: "), "optimizer question")
    p.send("sgd")
    check(p.expect("[the model's]: "), "loss question")
    p.send("")
    check(p.expect("Normalizer: 0 none, 1 simple (x/max|x|), 2 minmax, 3 zscore"), "normalizer menu")
    check(p.expect("Normalizer [none]: "), "normalizer question")
    p.send("3")
    check(p.expect("Method: 1 k-fold cross-validation, 2 fit [2]: "), "method question")
    p.send("1")
    check(p.expect("Folds [10]: "), "folds asked after k-fold")
    p.send("5")
    check(p.expect("Data source [1]: "), "data source question")
    p.send("3")
    check(p.expect("Keras dataset (mnist, fashion_mnist, cifar10, cifar100, imdb, reuters, boston_housing): "),
          "keras dataset question lists only the datasets ddts loads")
    p.send("cifar1000")
    check(p.expect("invalid answer: --keras-dataset: 'cifar1000' is not one of"),
          "a dataset ddts cannot load is refused when given")
    check(p.expect("Keras dataset (mnist, fashion_mnist, cifar10, cifar100, imdb, reuters, boston_housing): "), "keras dataset asked again")
    p.send("fashion-mnist")
    check(p.expect("Training samples to use [all]: "), "dataset length question")
    p.send("6000")
    check(p.expect("(XX)? [XY]: "), "order question")
    p.send("XX")
    check(p.expect("The same job without questions:"), "command line printed")
    rc = p.wait()
    check(rc == 0, "wizard exit status 0 (got %s)" % rc)
    t = p.transcript
    check(PASSPHRASE not in t, "passphrase never echoed")
    check(": short" not in t, "refused passphrase not echoed either")
    want_cl = ("ddts server --port 9000 --passphrase-file passphrase --model model/b_cnn.keras "
               "--clients 3 --epochs 12 --optimizer sgd --normalizer zscore --method kfold "
               "--folds 5 --data keras --keras-dataset fashion_mnist --samples 6000 --order XX")
    check(want_cl in t, "equivalent command line %r in transcript:\n%s" % (want_cl, t))
    job = json.load(open(os.path.join(work, "job.json")))
    want = {"port": 9000, "collect": False, "passphrase-file": "passphrase",
            "model": "model/b_cnn.keras", "clients": 3, "epochs": 12,
            "optimizer": "sgd", "normalizer": "zscore", "method": "kfold", "folds": 5,
            "data": "keras", "keras-dataset": "fashion_mnist", "samples": 6000, "order": "XX"}
    for k, v in want.items():
        check(job.get(k) == v, "job.json[%r] = %r, want %r" % (k, job.get(k), v))
    # Defaults kept with Enter stay out of the file (the defaults apply).
    for k in ("host", "batch-size", "loss"):
        check(k not in job, "default %r not written" % k)
    check("passphrase" not in json.dumps({k: v for k, v in job.items() if k != "passphrase-file"}),
          "no secret in the job file")
    check(PASSPHRASE not in open(os.path.join(work, "job.json")).read(), "secret not in job.json")
    pf = os.path.join(work, "passphrase")
    mode = stat.S_IMODE(os.stat(pf).st_mode)
    check(mode == 0o600, "passphrase file mode %o, want 600" % mode)
    check(open(pf).read() == PASSPHRASE + "\n", "passphrase file content")


def collect_and_eof(work):
    """Collect mode asks only what collecting needs; EOF mid-way fails cleanly."""
    with open(os.path.join(work, "pass"), "w") as f:
        f.write("from a file\n")
    os.chmod(os.path.join(work, "pass"), 0o600)  # as ddts server demands
    p = Pty([DDTS, "wizard", "--port", "7000", "--passphrase-file", "pass",
             "--job-out", "c.json"], work)
    check(p.expect("Address to listen on [0.0.0.0]: "), "address question (collect run)")
    p.send("127.0.0.1")
    check(p.expect("(n)? [y]: "), "port given as flag is not asked")
    p.send("n")
    for job in ("first", "second"):
        os.makedirs(os.path.join(work, "results", job))
        open(os.path.join(work, "results", job, "state"), "w").close()
    os.makedirs(os.path.join(work, "nojobs"))
    check(p.expect("Work folder of the job [./ddts-work]: "), "collect asks the work folder")
    p.send("nojobs")
    check(p.expect("invalid answer: nojobs holds no job to collect"),
          "a folder without a job is refused when given")
    check(p.expect("Work folder of the job [nojobs]: "), "the work folder asked again")
    p.send("results")
    check(p.expect("Jobs in results:\r\n  1) first\r\n  2) second\r\n"),
          "the jobs of the folder listed")
    check(p.expect("Job to collect (number or name) [1]: "), "which job to collect")
    p.send("2")
    rc = p.wait()
    check(rc == 0, "collect wizard exit 0 (got %s)" % rc)
    check("Passphrase" not in p.transcript, "no passphrase question with --passphrase-file")
    job = json.load(open(os.path.join(work, "c.json")))
    check(job.get("collect") is True and job.get("workdir") == "results" and
          job.get("host") == "127.0.0.1" and job.get("port") == 7000 and
          job.get("name") == "second", "collect job file: %r" % job)

    p = Pty([DDTS, "wizard", "--job-out", "never.json"], work)
    check(p.expect("Address to listen on [0.0.0.0]: "), "address question (EOF run)")
    os.write(p.fd, b"\x04")  # Ctrl-D: end of input
    rc = p.wait()
    check(rc == 1, "EOF exits 1 (got %s)" % rc)
    check("input ended" in p.transcript, "EOF explained")
    check(not os.path.exists(os.path.join(work, "never.json")), "no job file after EOF")


def folder_and_dataset(work):
    """--model FOLDER lists that folder's models; a dataset folder without X/ and Y/ is refused."""
    os.makedirs(os.path.join(work, "zoo"))
    src = os.environ.get("DDTS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
    shutil.copy(os.path.join(src, "tests", "data", "keras", "nested.keras"),
                os.path.join(work, "zoo", "mlp.keras"))
    shutil.copy(os.path.join(src, "tests", "data", "keras", "keras22_sequential.h5"),
                os.path.join(work, "zoo", "cnn.h5"))
    os.makedirs(os.path.join(work, "data", "X"))
    os.makedirs(os.path.join(work, "data", "Y"))
    p = Pty([DDTS, "wizard", "--host", "127.0.0.1", "--port", "7001", "--collect=no",
             "--passphrase-file", "pass", "--model", "zoo", "--clients", "2", "--epochs", "1",
             "--batch-size", "8", "--optimizer", "adam", "--loss", "mse", "--normalizer", "none",
             "--method", "fit", "--samples", "all", "--order", "XY", "--job-out", "d.json"], work)
    check(p.expect("Model files found:\r\n  1) zoo/cnn.h5\r\n  2) zoo/mlp.keras\r\n"),
          "models of the --model folder listed")
    check(p.expect("Model (number or path) [1]: "), "model question for a folder")
    p.send("")
    check(p.expect("Data source [1]: "), "data source question")
    p.send("")
    check(p.expect("Dataset folder (holding X/ and Y/): "), "dataset folder question")
    p.send("zoo")
    check(p.expect("invalid answer: zoo has no X/ and Y/ folders"), "non-dataset folder refused")
    check(p.expect("Dataset folder (holding X/ and Y/): "), "dataset folder asked again")
    p.send("data")
    rc = p.wait()
    check(rc == 0, "folder dialogue exit 0 (got %s): %s" % (rc, p.transcript[-300:]))
    job = json.load(open(os.path.join(work, "d.json")))
    check(job.get("model") == "zoo/cnn.h5" and job.get("dataset") == "data" and
          job.get("data", "server") == "server", "folder dialogue job file: %r" % job)
    check("Address to listen on" not in p.transcript and "Epochs" not in p.transcript,
          "settings given as flags are not asked")


def ctrl_c_restores_echo(work):
    """Ctrl-C at the passphrase prompt leaves the terminal echoing again."""
    import termios
    p = Pty([DDTS, "wizard", "--host", "h", "--port", "1", "--collect=no", "--job-out", "z.json"],
            work)
    check(p.expect("Passphrase (not echoed; clients need the same): "), "passphrase prompt")
    echo_off = not (termios.tcgetattr(p.fd)[3] & termios.ECHO)
    check(echo_off, "echo is off at the passphrase prompt")
    os.write(p.fd, b"\x03")  # Ctrl-C: SIGINT to the foreground process
    rc = p.wait()
    check(rc == -2, "Ctrl-C ends the wizard by SIGINT (got %s)" % rc)
    try:
        echo_on = bool(termios.tcgetattr(p.fd)[3] & termios.ECHO)
    except termios.error:
        echo_on = None
    check(echo_on is True, "echo restored after Ctrl-C (got %r)" % echo_on)


def train_questions(work):
    """For ddts train (--for train) the network questions are not asked."""
    p = Pty([DDTS, "wizard", "--for", "train", "--model", "model/a_mlp.h5", "--clients", "1",
             "--data", "keras", "--keras-dataset", "mnist", "--job-out", "t.json"], work)
    for prompt in ("Epochs [10]: ", "Batch size [32]: ", "[the model's, else adam]: ",
                   "[the model's]: ", "Normalizer [none]: ", "2 fit [2]: ",
                   "Training samples to use [all]: ", "(XX)? [XY]: "):
        check(p.expect(prompt), "train wizard asks %r" % prompt)
        p.send("")
    rc = p.wait()
    check(rc == 0, "train wizard exit 0 (got %s)" % rc)
    check("Address to listen on" not in p.transcript and "Passphrase" not in p.transcript and
          "collect" not in p.transcript, "no network questions for train")
    check("ddts train --model model/a_mlp.h5 --clients 1 --data keras --keras-dataset mnist"
          in p.transcript, "train command line printed")


def progress_lines(work):
    """Keras-like progress: redrawn in place on a terminal, one line per epoch otherwise."""
    import subprocess
    r = subprocess.run([DDTS, "wizard", "--selftest-progress"], cwd=work, capture_output=True,
                       text=True, timeout=30)
    err = r.stderr
    check(r.returncode == 0, "progress self-test exit 0")
    check("\r" not in err and "\033" not in err, "no carriage returns or escapes in a pipe")
    lines = err.splitlines()
    check(lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2",
          "one header and one line per epoch in a pipe: %r" % lines[:4])
    check(lines[1].startswith("1000/1000 [==============================] - ") and
          "/sample - loss: " in lines[1] and "val_accuracy: 0.7500" in lines[1],
          "end-of-epoch line: %r" % lines[1])
    check(sum("ETA:" in l for l in lines) == 0, "no running lines in a pipe")
    check(any(l.startswith("model.h5  4.00 MiB [====================] 100%") for l in lines),
          "finished transfer line: %r" % lines)
    check(sum(l.startswith("NAME ") for l in lines) == 2, "table printed when forced")

    p = Pty([DDTS, "wizard", "--selftest-progress"], work)
    rc = p.wait(timeout=30)
    t = p.transcript
    check(rc == 0, "progress self-test on a terminal exit 0")
    check("\r 500/1000 [==============>...............] - " in t and "ETA: " in t,
          "running line redrawn in place on a terminal: %r" % t[:400])
    check("\033[K" in t, "stale text erased on a terminal")
    check("\033[3A" in t, "table redrawn in place (cursor up 3 lines)")


def main():
    if not os.path.exists(DDTS):
        print("ddts binary not found at", DDTS)
        return 1
    work = tempfile.mkdtemp(prefix="ddts-wizard-")
    try:
        dialogue(work)
        collect_and_eof(work)
        folder_and_dataset(work)
        progress_lines(work)
        train_questions(work)
        ctrl_c_restores_echo(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if check.finish("test_wizard") else 1


if __name__ == "__main__":
    sys.exit(main())
