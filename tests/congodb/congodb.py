"""congodb.py -- start and stop tests/congodb/launch.mjs (CongoDB, a MongoDB stand-in) from
Python: used by with_congodb.py and test_congodb.py. (The delivery tests start it through
their own harness: tests/delivery/delivery_helpers.py.)

Environment, as ctest sets it: NODE (the node binary), CONGODB_LAUNCHER (launch.mjs; this
folder's by default) and CONGODB_MODULES (the node_modules that scripts/congodb-install.sh
filled; launch.mjs has a default)."""

import ctypes
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
START_TIMEOUT = 20.0


def _pdeathsig():
    """In the child before exec: SIGKILL when this process dies, however it dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort; stop() and atexit paths still clean up
        pass


def argv(*extra):
    node = os.environ.get('NODE') or shutil.which('node') or 'node'
    out = [node, os.environ.get('CONGODB_LAUNCHER') or os.path.join(HERE, 'launch.mjs'),
           '--port', '0']
    if os.environ.get('CONGODB_MODULES'):
        out += ['--modules', os.environ['CONGODB_MODULES']]
    return out + list(extra)


class Server:
    """One launch.mjs on 127.0.0.1 and a free port; its stderr goes to a log file."""

    def __init__(self, *extra):
        self.argv = argv(*extra)
        self.dir = tempfile.mkdtemp(prefix='congodb-')
        self.log_path = os.path.join(self.dir, 'congodb.log')
        self.popen = None
        self.port = None

    def start(self, timeout=START_TIMEOUT):
        with open(self.log_path, 'ab') as log:
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, stderr=log,
                                          start_new_session=True, preexec_fn=_pdeathsig)
        # "listening <port>" is its first line on stdout.
        line = b''
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.popen.stdout, selectors.EVENT_READ)
            while not line.endswith(b'\n'):
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.stop()
                    raise RuntimeError('congodb printed no port within %.0f s:\n%s'
                                       % (timeout, self.log()))
                chunk = os.read(self.popen.stdout.fileno(), 1)
                if not chunk:
                    self.stop()
                    raise RuntimeError('congodb exited before it listened:\n' + self.log())
                line += chunk
        self.port = int(line.split()[1])
        return self

    def url(self, db):
        return 'mongodb://127.0.0.1:%d/%s' % (self.port, db)

    def log(self):
        try:
            with open(self.log_path, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def stop(self):
        """SIGTERM (it exits 0 at once), SIGKILL to its group if it does not; reaps it."""
        p, self.popen = self.popen, None
        if p is not None:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            p.wait()
            p.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)
