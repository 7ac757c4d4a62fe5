"""with_congodb.py [--env VAR] [--db NAME] -- COMMAND [ARG...]

Run COMMAND with a CongoDB (launch.mjs, a MongoDB stand-in) started for it alone, VAR
(MONGODB_URI by default) set to mongodb://127.0.0.1:<port>/<NAME> (NAME: "webhooks_test") in
its environment. Exits with COMMAND's exit code (77, "skipped", included); CongoDB is stopped
however the run ends, and its log is printed when COMMAND fails. ctest runs the store contract
this way (store_contract_congodb). Environment: see congodb.py."""

import os
import signal
import subprocess
import sys

from congodb import Server, _pdeathsig


def main(args):
    var, db = 'MONGODB_URI', 'webhooks_test'
    while args and args[0] != '--':
        if args[0] == '--env' and len(args) > 1:
            var, args = args[1], args[2:]
        elif args[0] == '--db' and len(args) > 1:
            db, args = args[1], args[2:]
        else:
            break
    if not args or args[0] != '--' or len(args) < 2:
        sys.stderr.write(__doc__)
        return 2
    command = args[1:]

    server = Server()
    child = None

    def on_signal(signum, frame):
        if child is not None and child.poll() is None:
            child.kill()
        server.stop()
        sys.exit(128 + signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    try:
        server.start()
        env = dict(os.environ, **{var: server.url(db)})
        print('with_congodb: %s=%s' % (var, env[var]), flush=True)
        child = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                                 preexec_fn=_pdeathsig)
        rc = child.wait()
        if rc not in (0, 77):
            sys.stderr.write('----- congodb log -----\n%s' % server.log())
        return rc
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        server.stop()


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
