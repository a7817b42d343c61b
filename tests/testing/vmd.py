"""Starting and stopping a real vmd from the Python test scripts (tests/remote/*.py,
tests/soak/soak.py): start() runs it on a free port, learns the port from its first
line and keeps draining its log (so it never blocks on a full pipe; the lines are kept
for wait_for_log); stop() ends it with
SIGTERM (SIGKILL after a timeout), thawing a stopped one first."""
import re
import signal
import subprocess
import threading
import time


class Vmd:
    def __init__(self, process, port):
        self.process = process
        self.port = port
        self.pid = process.pid
        self.log = []  # vmd's log lines so far (the drain thread appends)

    def wait_for_log(self, text, timeout):
        """True once a log line contains `text`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in list(self.log)):
                return True
            time.sleep(0.01)
        return False

    def poll(self):
        return self.process.poll()

    @property
    def returncode(self):
        return self.process.returncode

    def send_signal(self, sig):
        self.process.send_signal(sig)


def start(path, *args):
    """Returns a Vmd, or None when vmd did not come up."""
    process = subprocess.Popen([path, "-p", "0", *args], stderr=subprocess.PIPE, text=True)
    match = None
    early = []
    for _ in range(200):  # with -v, lines come before the one naming the port
        line = process.stderr.readline()
        if not line:
            break
        early.append(line)
        match = re.search(r"on port (\d+)", line)
        if match:
            break
    if not match:
        process.kill()
        process.wait()
        return None
    vmd = Vmd(process, match.group(1))
    vmd.log.extend(early)

    def drain():
        for line in process.stderr:
            if len(vmd.log) < 10000:
                vmd.log.append(line)

    threading.Thread(target=drain, daemon=True).start()
    return vmd


def stop(vmd):
    if vmd is None or vmd.process.poll() is not None:
        return
    vmd.process.send_signal(signal.SIGCONT)
    vmd.process.send_signal(signal.SIGTERM)
    try:
        vmd.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        vmd.process.kill()
        vmd.process.wait()


def report(failures):
    """Prints each failure; the exit status of a test script (0 = passed)."""
    for failure in failures:
        print("FAIL:", failure)
    return 1 if failures else 0
