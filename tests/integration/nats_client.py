"""nats_client.py -- a tiny NATS client speaking the raw text protocol over one socket.

Only what the tests need: CONNECT, PING/PONG, SUB, UNSUB, PUB, and reading MSG and HMSG
(the latter carries the server's "503 no responders" status). Single-threaded: messages are
read only while a caller waits for one, and every wait has a deadline. Standard library only.
"""

import itertools
import json
import socket
import time
import uuid


class NatsError(Exception):
    """The server sent -ERR, closed the connection, or a wait passed its deadline."""


class Msg:
    """One delivered message: subject, sid, reply subject, header lines, status and data."""

    def __init__(self, subject, sid, reply, data, headers=None, status=None):
        self.subject = subject
        self.sid = sid
        self.reply = reply
        self.data = data
        self.headers = headers or {}
        self.status = status

    @property
    def no_responders(self):
        return self.status == 503 and not self.data

    def json(self):
        return json.loads(self.data.decode('utf-8'))

    def __repr__(self):
        return 'Msg(subject=%r, status=%r, data=%r)' % (self.subject, self.status, self.data[:200])


def _parse_headers(block):
    """Split an HMSG header block ("NATS/1.0 503\\r\\nKey: v\\r\\n\\r\\n") into status, dict."""
    lines = block.decode('utf-8', 'replace').split('\r\n')
    status = None
    first = lines[0].split(None, 2)
    if len(first) >= 2 and first[1].isdigit():
        status = int(first[1])
    headers = {}
    for line in lines[1:]:
        if ':' in line:
            k, v = line.split(':', 1)
            headers[k.strip()] = v.strip()
    return status, headers


class NatsClient:
    """A connection to one NATS server. Use as a context manager or call close()."""

    def __init__(self, host='127.0.0.1', port=4222, timeout=5.0, name='integration-test',
                 user=None, password=None):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b''
        self.sids = itertools.count(1)
        self.pending = []  # messages read while waiting for something else
        self.info = None
        op, rest = self._read_op(time.monotonic() + timeout)
        if op != 'INFO':
            raise NatsError('expected INFO from the server, got %r' % op)
        self.info = json.loads(rest)
        connect = {'verbose': False, 'pedantic': False, 'lang': 'python', 'version': '0',
                   'protocol': 1, 'name': name, 'headers': True, 'no_responders': True}
        if user is not None:
            connect.update(user=user, **{'pass': password or ''})
        self._send(b'CONNECT ' + json.dumps(connect).encode() + b'\r\n')
        self.flush(timeout)
        self.inbox = '_INBOX.' + uuid.uuid4().hex
        self.inbox_sid = self.subscribe(self.inbox + '.*')
        self.flush(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NatsError('timed out waiting for the NATS server')
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise NatsError('timed out waiting for the NATS server') from None
        if not chunk:
            raise NatsError('the NATS server closed the connection')
        self.buf += chunk

    def _read_line(self, deadline):
        while b'\r\n' not in self.buf:
            self._fill(deadline)
        line, self.buf = self.buf.split(b'\r\n', 1)
        return line.decode('utf-8')

    def _read_exact(self, n, deadline):
        while len(self.buf) < n + 2:
            self._fill(deadline)
        data, self.buf = self.buf[:n], self.buf[n + 2:]  # payload is followed by \r\n
        return data

    def _read_op(self, deadline):
        """Read one protocol operation; returns (OP, rest of line) or ('MSG', Msg)."""
        while True:
            line = self._read_line(deadline)
            if not line:
                continue
            op, _, rest = line.partition(' ')
            op = op.upper()
            if op == 'PING':
                self._send(b'PONG\r\n')
                continue
            if op == '+OK':
                continue
            if op == '-ERR':
                raise NatsError('server error: %s' % rest)
            if op == 'MSG':
                f = rest.split()
                subject, sid, size = f[0], int(f[1]), int(f[-1])
                reply = f[2] if len(f) == 4 else None
                return 'MSG', Msg(subject, sid, reply, self._read_exact(size, deadline))
            if op == 'HMSG':
                f = rest.split()
                subject, sid = f[0], int(f[1])
                hdr_len, total = int(f[-2]), int(f[-1])
                reply = f[2] if len(f) == 5 else None
                raw = self._read_exact(total, deadline)
                status, headers = _parse_headers(raw[:hdr_len])
                return 'MSG', Msg(subject, sid, reply, raw[hdr_len:], headers, status)
            return op, rest

    def flush(self, timeout=5.0):
        """PING and wait for the PONG: everything sent before has been processed."""
        self._send(b'PING\r\n')
        deadline = time.monotonic() + timeout
        while True:
            op, rest = self._read_op(deadline)
            if op == 'PONG':
                return
            if op == 'MSG':
                self.pending.append(rest)

    def subscribe(self, subject, queue=None):
        sid = next(self.sids)
        q = (' ' + queue) if queue else ''
        self._send(('SUB %s%s %d\r\n' % (subject, q, sid)).encode())
        return sid

    def unsubscribe(self, sid):
        self._send(('UNSUB %d\r\n' % sid).encode())

    def publish(self, subject, payload=b'', reply=None):
        if isinstance(payload, str):
            payload = payload.encode('utf-8')
        r = (' ' + reply) if reply else ''
        self._send(('PUB %s%s %d\r\n' % (subject, r, len(payload))).encode() + payload + b'\r\n')

    def next_msg(self, sid=None, subject=None, timeout=5.0):
        """The next message for sid (and subject, if given), waiting at most timeout."""
        def wanted(m):
            return (sid is None or m.sid == sid) and (subject is None or m.subject == subject)
        for i, m in enumerate(self.pending):
            if wanted(m):
                return self.pending.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            op, rest = self._read_op(deadline)
            if op != 'MSG':
                continue
            if wanted(rest):
                return rest
            self.pending.append(rest)

    def request(self, subject, payload=b'', timeout=5.0):
        """Publish with a fresh reply subject and return the one reply (a Msg)."""
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload)
        reply = '%s.%s' % (self.inbox, uuid.uuid4().hex)
        self.publish(subject, payload, reply)
        return self.next_msg(self.inbox_sid, subject=reply, timeout=timeout)

    def request_json(self, subject, payload=b'', timeout=5.0):
        """request() and parse the reply body; raises NatsError on no responders."""
        m = self.request(subject, payload, timeout)
        if m.no_responders:
            raise NatsError('no responders on %s' % subject)
        return m.json()
