"""The parent side of the fuzz worker: sends cases, names crashes and hangs, restarts the child."""

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz_worker.py")
STARTUP_TIMEOUT_S = 300  # importing TensorFlow on a loaded 2-core machine
CASE_TIMEOUT_S = float(os.environ.get("FUSEDLAYERS_FUZZ_CASE_TIMEOUT", "60"))
# Errors that are a clean rejection of bad input (ResourceExhausted: a huge but
# representable output that the allocator refused).
CLEAN_ERRORS = frozenset({"InvalidArgumentError", "ValueError", "TypeError",
                          "ResourceExhaustedError"})


def death_name(returncode):
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"


class FuzzWorker:
    """One long-lived fuzz_worker.py child; run() restarts it after it dies."""

    def __init__(self):
        self.proc = None
        self.log = None
        self.buffer = b""

    def _start(self):
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, WORKER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log)
        self.buffer = b""
        ready = self._read_line(STARTUP_TIMEOUT_S)
        if ready is None or not json.loads(ready).get("ready"):
            raise RuntimeError(f"fuzz worker failed to start:\n{self._stop()}")

    def _read_line(self, timeout):
        """The next reply line, or None on timeout or end of stream."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def _stop(self):
        """Kills the child if alive; returns how it ended and the tail of its stderr."""
        if self.proc.poll() is None:
            self.proc.kill()
        returncode = self.proc.wait()
        self.log.seek(0)
        tail = self.log.read().decode(errors="replace")[-3000:]
        self.log.close()
        self.proc = None
        return f"{death_name(returncode)}; stderr tail:\n{tail}"

    def run(self, case):
        """Returns the worker's reply, or {"outcome": "crash"/"hang", "detail": ...}."""
        if self.proc is None:
            self._start()
        try:
            self.proc.stdin.write((json.dumps(case) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            return {"outcome": "crash", "detail": self._stop()}
        line = self._read_line(CASE_TIMEOUT_S)
        if line is not None:
            return json.loads(line)
        hung = self.proc.poll() is None
        detail = self._stop()
        if hung:
            return {"outcome": "hang", "detail": f"no reply within {CASE_TIMEOUT_S} s; {detail}"}
        return {"outcome": "crash", "detail": detail}

    def close(self):
        if self.proc is not None:
            self.proc.stdin.close()
            self._stop()


def check_clean(case, reply, must_succeed):
    """Fails unless the case ended in a result or in a clean rejection of its input."""
    outcome = reply["outcome"]
    assert outcome not in ("crash", "hang"), f"{outcome} on {json.dumps(case)}:\n{reply['detail']}"
    if outcome == "error":
        # A Keras drop-in may fail as its stock twin fails on the same case (Keras's own
        # argument checks raise e.g. AttributeError for padding=3).
        assert reply["type"] in CLEAN_ERRORS or reply["type"] == reply.get("stock_type"), (
            f"unclean {reply['type']} on {json.dumps(case)}: {reply['message']}")
        assert reply["message"].strip(), f"empty error message on {json.dumps(case)}"
    if must_succeed:
        assert outcome == "ok", f"valid case rejected: {json.dumps(case)}: {reply}"
