"""target.py PORT RECORD_FILE -- the delivery target of test_docker_engine.py, on 127.0.0.1.

Every POST is appended to RECORD_FILE as one JSON line: {"path", "headers" (names in lower case),
"body", "status"}. POST /ok/... answers 200. POST /flaky/... answers 503 until GET
/control?flaky=0 (then 200); GET /control?flaky=1 makes it fail again. It prints "ready" once
it listens and stops on SIGTERM.
"""

import json
import signal
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, record = int(sys.argv[1]), sys.argv[2]
state = {'flaky': True}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def reply(self, status, body=b'{}'):
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(n).decode('utf-8', 'replace')
        path = urllib.parse.urlsplit(self.path).path
        with lock:
            status = 503 if path.startswith('/flaky/') and state['flaky'] else 200
            with open(record, 'a', encoding='utf-8') as f:
                f.write(json.dumps({'path': path, 'status': status, 'body': body,
                                    'headers': {k.lower(): v for k, v in self.headers.items()}}) + '\n')
        self.reply(status)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path != '/control':
            return self.reply(404)
        q = urllib.parse.parse_qs(url.query)
        with lock:
            if 'flaky' in q:
                state['flaky'] = q['flaky'][0] == '1'
            body = json.dumps(state).encode()
        self.reply(200, body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(('127.0.0.1', port), Handler)
server.daemon_threads = True
signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=server.shutdown).start())
print('ready', flush=True)
server.serve_forever()
