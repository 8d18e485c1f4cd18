"""The bench's child processes, and stopping them on every way out.

Every long-lived child (a node, the Kafka broker, redis-server, wrk,
pgbench, perf) is started through `Processes.start`, in a process group of
its own: a Ctrl-C in the terminal reaches the bench alone, as it reached
only the shell of the bash version, and the bench then stops its children
itself. `Processes.stop_all` runs on every exit (normal end, failure,
SIGINT, SIGTERM, SIGHUP): load generators first, then nodes, then the
broker (a draining relay still finds it), then redis-server, each with
SIGTERM and, 10 s later, SIGKILL.
"""
import signal
import subprocess
import sys
import threading
import time

STOP_GRACE_S = 10      # SIGTERM, then SIGKILL after this long
KINDS = ("tool", "node", "broker", "redis")  # the order in which cleanup stops them
STDOUT = subprocess.STDOUT


class BenchError(Exception):
    """A failure the bench reports as `bench: MESSAGE` with exit status 1."""


def fail(message):
    raise BenchError(message)


def say(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def warn(message):
    say(f"WARNING: {message}")


def wait_for(check, timeout_s, interval_s):
    """check() every interval_s until it returns something other than None;
    that value, or None after timeout_s (at most timeout_s / interval_s + 1
    calls)."""
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / interval_s) + 1):
        value = check()
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(interval_s)
    return None


class Processes:
    """The children that may still run; one per bench run, used from the
    main thread only."""

    def __init__(self):
        self._children = []  # (kind, Popen), in start order

    def start(self, kind, argv, stdout=None, stderr=None):
        """Starts argv in the background. stdout and stderr: a path to write
        to, None for the bench's own, or stderr=STDOUT for stdout's file."""
        assert kind in KINDS, kind
        out = open(stdout, "wb") if stdout else None
        err = open(stderr, "wb") if stderr not in (None, STDOUT) else stderr
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True)
        finally:
            for f in (out, err):
                if f not in (None, STDOUT):
                    f.close()
        self._children.append((kind, proc))
        return proc

    def wait(self, proc, timeout_s):
        """Waits for a tool to end; after timeout_s it gets SIGTERM and, 5 s
        later, SIGKILL (as `timeout --kill-after=5` did). Its exit status,
        124 when it timed out. The wait blocks (no polling), so that the
        bench itself costs no CPU while it measures."""
        timed_out = threading.Event()

        def stop(signal_it):
            timed_out.set()
            signal_it()
        timers = [threading.Timer(timeout_s, stop, (proc.terminate,)),
                  threading.Timer(timeout_s + 5, stop, (proc.kill,))]
        for timer in timers:
            timer.daemon = True
            timer.start()
        try:
            status = proc.wait()
        finally:
            for timer in timers:
                timer.cancel()
        self._forget(proc)
        return 124 if timed_out.is_set() else status

    def _forget(self, proc):
        self._children = [(k, p) for k, p in self._children if p is not proc]

    def stop(self, proc, sig=signal.SIGTERM):
        """Sends sig, then SIGKILL after STOP_GRACE_S; waits for the end."""
        if proc.poll() is None:
            try:
                proc.send_signal(sig)
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.wait()
        self._forget(proc)

    def kill(self, proc):
        """SIGKILL: a crash, not a drain."""
        self.stop(proc, signal.SIGKILL)

    def stop_all(self):
        for kind in KINDS:
            for k, proc in reversed(list(self._children)):
                if k == kind:
                    self.stop(proc)


def exit_on_signals():
    """SIGINT, SIGTERM and SIGHUP end the bench through its normal exit path
    (which stops the children): status 130, or 129 for SIGHUP."""
    def leave(signum, _frame):
        raise SystemExit(129 if signum == signal.SIGHUP else 130)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, leave)


def ignore_signals():
    """While cleaning up: a second Ctrl-C must not cut the cleanup short
    (it is bounded: STOP_GRACE_S per process)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
