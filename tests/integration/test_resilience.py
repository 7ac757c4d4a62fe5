"""test_resilience.py -- outages and shutdowns with real processes: NATS down and back, the
service down, a service that does not answer, kill -9 durability, SIGTERM with requests in
flight, and a cold start with NATS last."""

import concurrent.futures
import json
import signal
import socket
import subprocess
import threading
import time

import harness
from harness import IntegrationCase

UNKNOWN_ID = '00000000-0000-4000-8000-000000000000'


def all_routes(hid):
    """Every route that needs the service, with the token where it is needed."""
    return [('POST', '/webhooks', {'targetUrl': 'http://127.0.0.1:9/outage'}),
            ('GET', '/webhooks', None), ('GET', '/webhooks/' + hid, None),
            ('PUT', '/webhooks/' + hid, {'newTargetUrl': 'http://127.0.0.1:9/outage2'}),
            ('DELETE', '/webhooks/' + UNKNOWN_ID, None), ('GET', '/ip', None),
            ('GET', '/healthz', None)]


def sigterm_all(procs, timeout=harness.STOP_TIMEOUT):
    """SIGTERM every process at once; {name: exit code or 'still running ...'} after timeout."""
    for p in procs:
        p.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    outcome = {}
    for p in procs:
        try:
            outcome[p.name] = p.popen.wait(timeout=max(0.01, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            outcome[p.name] = 'still running %.0f s after SIGTERM' % timeout
    return outcome


class Load:
    """Threads sending requests until stopped; records every outcome."""

    def __init__(self, fn, threads=8):
        self.fn = fn
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.results = []   # (status, json) per response
        self.errors = []    # exceptions (connection refused/reset after a shutdown)
        self.cond = threading.Condition(self.lock)
        self.pool = [threading.Thread(target=self._run, args=(i,), daemon=True)
                     for i in range(threads)]
        for t in self.pool:
            t.start()

    def _run(self, worker):
        i = 0
        while not self.stop_flag.is_set():
            i += 1
            try:
                r = self.fn(worker, i)
                with self.cond:
                    self.results.append((r.status, r.json))
                    self.cond.notify_all()
            except OSError as e:
                with self.cond:
                    self.errors.append(e)
                    self.cond.notify_all()
                self.stop_flag.wait(0.01)

    def wait_results(self, n, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.results) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError('only %d responses within %.1fs' % (len(self.results), timeout))
                self.cond.wait(remaining)

    def stop(self, timeout=15):
        self.stop_flag.set()
        for t in self.pool:
            t.join(timeout)
            if t.is_alive():
                raise AssertionError('a client thread hung')

    def statuses(self):
        with self.lock:
            return {s for s, _ in self.results}


class NatsOutageTest(IntegrationCase):
    stack_per_test = True
    stack_options = {'nats_timeout_ms': 3000}

    def test_nats_down_503_then_recovers(self):
        gw, svc = self.gw, self.stack.svc
        hid = gw.register('http://127.0.0.1:9/before-outage').json['id']
        gw_pid, svc_pid = gw.proc.pid, svc.proc.pid
        self.stack.nats.stop()
        # The gateway notices the closed connection at once; wait for that, then every route
        # answers 503 without waiting for NATS_TIMEOUT_MS.
        harness.poll_until(lambda: gw.request('GET', '/healthz', auth=False).status == 503, 5,
                           what='/healthz 503 with NATS down')
        for method, path, body in all_routes(hid):
            with self.subTest(method=method, path=path):
                r = gw.request(method, path, body)
                self.assertError(r, 503, 'unavailable')
                self.assertLess(r.elapsed, 1.0, 'a 503 must not wait for the NATS timeout')

        self.stack.nats.start()  # the same port and store directory
        gw.wait_healthy(timeout=20)
        self.assertEqual((gw.proc.pid, svc.proc.pid), (gw_pid, svc_pid))
        self.assertTrue(gw.proc.running() and svc.proc.running())
        r = gw.request('GET', '/webhooks/' + hid)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json['targetUrl'], 'http://127.0.0.1:9/before-outage')
        r = gw.register('http://127.0.0.1:9/after-outage')
        self.assertEqual(gw.request('GET', '/webhooks/' + r.json['id']).status, 200)
        self.assertEqual(gw.request('GET', '/ip', auth=False).status, 202)


    def test_sigterm_while_nats_is_down(self):
        # Both binaries still exit 0 within 5 s of SIGTERM when NATS went away.
        gw, svc = self.gw, self.stack.svc
        gw.register('http://127.0.0.1:9/sigterm')
        self.stack.nats.stop()
        harness.poll_until(lambda: gw.request('GET', '/healthz', auth=False).status == 503, 5,
                           what='/healthz 503 with NATS down')
        outcome = sigterm_all((svc.proc, gw.proc))
        # Let the stack's own stop see NATS again if a process is still draining.
        self.stack.nats.start()
        self.assertEqual(outcome, {'webhooks-svc': 0, 'webhooks-gateway': 0})


class ColdStartTest(IntegrationCase):
    """The service and the gateway started while NATS is not up yet."""

    stack_auto = False

    def start_without_nats(self):
        st = self.own_stack(nats_timeout_ms=3000)
        st.nats.port = harness.free_port()
        svc = st.add_service(wait=False)
        gw = st.add_gateway(wait=False, nats_timeout_ms=3000)
        # Runs before the stack is closed: with NATS up, a process stuck in its first
        # connect gets going again and the stack's own SIGTERM check is not held up by it.
        self.addCleanup(self.start_nats, st)
        return st, svc, gw

    def start_nats(self, st):
        if st.nats.proc is None:
            st.nats.start()
            st.procs.insert(0, st.nats.proc)

    def test_nats_last(self):
        st, svc, gw = self.start_without_nats()
        self.start_nats(st)
        svc.wait_ready()
        gw.wait_ready()
        gw.wait_healthy(timeout=20)
        r = gw.register('http://127.0.0.1:9/cold')
        self.assertEqual(gw.request('GET', '/webhooks/' + r.json['id']).status, 200)

    def test_gateway_serves_503_before_nats_is_up(self):
        # /healthz is 503 while NATS is down, also when it has not been up yet: the gateway
        # listens without waiting for NATS.
        st, svc, gw = self.start_without_nats()
        gw.wait_ready(timeout=5)
        r = gw.request('GET', '/healthz', auth=False)
        self.assertError(r, 503, 'unavailable')

    def test_sigterm_before_nats_is_up(self):
        # Neither process may hang on SIGTERM because NATS never came up.
        st, svc, gw = self.start_without_nats()
        time.sleep(1.0)  # let both reach their NATS connect; nothing to wait on otherwise
        outcome = sigterm_all((svc.proc, gw.proc))
        self.assertEqual(outcome, {'webhooks-svc': 0, 'webhooks-gateway': 0})


class ServiceOutageTest(IntegrationCase):
    stack_per_test = True
    stack_options = {'nats_timeout_ms': 3000}

    def check_all_503(self, hid):
        for method, path, body in all_routes(hid):
            with self.subTest(method=method, path=path):
                r = self.gw.request(method, path, body)
                self.assertError(r, 503, 'unavailable')
                self.assertLess(r.elapsed, 1.0, 'no responders must not wait for the timeout')

    def test_service_stopped_503(self):
        hid = self.gw.register('http://127.0.0.1:9/svc-down').json['id']
        self.stack.svc.stop()
        self.check_all_503(hid)
        self.stack.svc.start()
        self.gw.wait_healthy(timeout=10)
        self.assertEqual(self.gw.request('GET', '/webhooks/' + hid).status, 200)

    def test_service_killed_503(self):
        hid = self.gw.register('http://127.0.0.1:9/svc-killed').json['id']
        self.stack.svc.kill()
        self.check_all_503(hid)
        self.stack.svc.start()
        self.gw.wait_healthy(timeout=10)
        self.assertEqual(self.gw.request('GET', '/webhooks/' + hid).json['targetUrl'],
                         'http://127.0.0.1:9/svc-killed')


class SlowServiceTest(IntegrationCase):
    stack_per_test = True
    stack_options = {'nats_timeout_ms': 500}

    def test_no_reply_is_504_then_recovers(self):
        gw, svc = self.gw, self.stack.svc
        a = gw.register('http://127.0.0.1:9/a').json['id']
        b = gw.register('http://127.0.0.1:9/b').json['id']
        svc.proc.pause()
        self.addCleanup(svc.proc.resume)
        for method, path, body in [('GET', '/webhooks/' + a, None), ('GET', '/webhooks', None),
                                   ('POST', '/webhooks', {'targetUrl': 'http://127.0.0.1:9/late'}),
                                   ('GET', '/ip', None)]:
            with self.subTest(method=method, path=path):
                r = gw.request(method, path, body)
                self.assertError(r, 504, 'timeout')
                self.assertGreaterEqual(r.elapsed, 0.45)
                self.assertLess(r.elapsed, 2.5)
        svc.proc.resume()
        gw.wait_healthy(timeout=10)
        # Late replies to the timed-out requests must not be taken for answers to new ones.
        for _ in range(5):
            r = gw.request('GET', '/webhooks/' + b)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json['id'], b)

    def test_healthz_503_when_service_does_not_answer(self):
        # The contract: /healthz is 200 when NATS and the service answer, else 503.
        self.stack.svc.proc.pause()
        self.addCleanup(self.stack.svc.proc.resume)
        r = self.gw.request('GET', '/healthz', auth=False)
        self.assertError(r, 503, 'unavailable')


class DurabilityTest(IntegrationCase):
    stack_per_test = True
    stack_options = {'nats_timeout_ms': 2000}

    def test_acknowledged_writes_survive_kill_9(self):
        gw, svc = self.gw, self.stack.svc
        n = 200

        def reg(i):
            return gw.register('http://127.0.0.1:9/durable/%d' % i).json['id']
        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            ids = list(ex.map(reg, range(n)))
        # Updates and deletes, acknowledged concurrently, then kill -9 at once.
        upd, dele = ids[:40], ids[40:80]

        def update(h):
            r = gw.request('PUT', '/webhooks/' + h, {'newTargetUrl': 'https://127.0.0.1:9/u/' + h})
            self.assertEqual(r.status, 200, r)

        def delete(h):
            r = gw.request('DELETE', '/webhooks/' + h)
            self.assertEqual(r.status, 204, r)
        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            list(ex.map(update, upd))
            list(ex.map(delete, dele))
        svc.kill()
        svc.start()
        gw.wait_healthy(timeout=10)

        def check(i):
            h = ids[i]
            r = gw.request('GET', '/webhooks/' + h)
            if h in dele:
                return r.status == 404 or r
            if h in upd:
                return (r.status == 200 and r.json['targetUrl'] == 'https://127.0.0.1:9/u/' + h) or r
            return (r.status == 200 and r.json['targetUrl'] == 'http://127.0.0.1:9/durable/%d' % i) or r
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            bad = [x for x in ex.map(check, range(n)) if x is not True]
        self.assertEqual(bad, [])
        self.assertEqual(gw.count(), n - len(dele))

    def test_kill_9_during_a_stream_of_writes(self):
        gw, svc = self.gw, self.stack.svc
        load = Load(lambda w, i: gw.request('POST', '/webhooks',
                                            {'targetUrl': 'http://127.0.0.1:9/s/%d/%d' % (w, i)}))
        try:
            load.wait_results(100, timeout=20)
            svc.kill()
            load.wait_results(len(load.results) + 16, timeout=20)  # answers while it is down
        finally:
            load.stop()
        acked = [j for s, j in load.results if s == 201]
        self.assertGreaterEqual(len(acked), 100)
        self.assertLessEqual(load.statuses(), {201, 503, 504}, load.statuses())
        svc.start()
        gw.wait_healthy(timeout=10)
        stored = {h['id']: h['targetUrl'] for h in gw.list_all()}
        missing = [j for j in acked if stored.get(j['id']) != j['targetUrl']]
        self.assertEqual(missing, [], 'acknowledged webhooks lost by kill -9')


class ShutdownTest(IntegrationCase):
    stack_per_test = True

    def test_idle_sigterm_exits_0_quickly(self):
        rc, took = self.gw.stop()
        self.assertEqual(rc, 0)
        self.assertLess(took, 5)
        rc, took = self.stack.svc.stop()
        self.assertEqual(rc, 0)
        self.assertLess(took, 5)

    def test_gateway_sigterm_repeatedly(self):
        # Every stop of the gateway must be clean, not just most of them.
        for i in range(30):
            self.gw.request('GET', '/healthz', auth=False)
            rc, took = self.gw.stop()
            self.assertEqual(rc, 0, 'cycle %d' % i)
            self.gw.start()

    def test_gateway_sigterm_with_requests_in_flight(self):
        gw = self.gw
        gw.register('http://127.0.0.1:9/flight')
        load = Load(lambda w, i: gw.request('GET', '/webhooks'))
        try:
            load.wait_results(50, timeout=20)
            rc, took = gw.stop()
        finally:
            load.stop()
        self.assertEqual(rc, 0)
        self.assertLess(took, 5)
        self.assertIn(200, load.statuses())
        self.assertLessEqual(load.statuses(), {200, 503}, load.statuses())

    def test_gateway_sigterm_with_requests_on_open_connections(self):
        # Connections accepted before SIGTERM may still send their request during the drain
        # (one request with a half-sent body keeps the drain going). Each must get an answer
        # or a closed connection, and the gateway must still exit 0 within 5 s.
        gw = self.gw
        slow = socket.create_connection((gw.host, gw.port), timeout=10)
        slow.sendall(b'POST /webhooks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n'
                     b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"targ'
                     % gw.token.encode())
        idle = [socket.create_connection((gw.host, gw.port), timeout=10) for _ in range(12)]
        self.assertEqual(gw.request('GET', '/healthz', auth=False).status, 200)  # all accepted
        request = b'GET /webhooks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n' % gw.token.encode()
        t0 = time.monotonic()
        gw.proc.signal(signal.SIGTERM)
        gw.proc.wait_line(r'received SIGTERM', timeout=5)
        # Spread the requests over the whole drain, so some come after it gave up waiting.
        answers = []
        for i, s in enumerate(idle):
            target = t0 + 0.3 + i * 0.35
            time.sleep(max(0.0, target - time.monotonic()))
            try:
                s.sendall(request)
            except OSError:
                answers.append('closed')
                continue
        for s in idle + [slow]:
            try:
                s.settimeout(max(0.1, t0 + 7 - time.monotonic()))
                data = s.recv(4096)
                answers.append(data.split(b'\r\n', 1)[0].decode() if data else 'closed')
            except socket.timeout:
                answers.append('no answer')
            except OSError:
                answers.append('closed')
            finally:
                s.close()
        try:
            rc = gw.proc.popen.wait(timeout=max(0.1, t0 + 5 - time.monotonic()))
        except subprocess.TimeoutExpired:
            rc = 'still running 5 s after SIGTERM'
        gw.proc.kill(check=False)
        self.assertEqual(rc, 0, answers)
        self.assertNotIn('no answer', answers)
        gw.proc.check_sanitizer()

    def test_gateway_answers_503_and_closes_during_the_drain(self):
        # A request still being received keeps the drain going; one that arrives on a new
        # connection meanwhile is answered 503 "unavailable" and its connection closed.
        gw = self.gw
        slow = socket.create_connection((gw.host, gw.port), timeout=10)
        self.addCleanup(slow.close)
        slow.sendall(b'POST /webhooks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n'
                     b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"targ'
                     % gw.token.encode())
        self.assertEqual(gw.request('GET', '/healthz', auth=False).status, 200)
        gw.proc.signal(signal.SIGTERM)
        gw.proc.wait_line(r'received SIGTERM', timeout=5)
        with socket.create_connection((gw.host, gw.port), timeout=5) as s:
            s.sendall(b'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')
            data = b''
            while True:
                more = s.recv(4096)
                if not more:
                    break  # the gateway closed the connection after its answer
                data += more
        head, _, body = data.partition(b'\r\n\r\n')
        lines = head.decode().split('\r\n')
        self.assertEqual(lines[0].split()[1], '503', data)
        headers = {k.strip().lower(): v.strip() for k, v in (l.split(':', 1) for l in lines[1:])}
        self.assertEqual(headers.get('connection', '').lower(), 'close', data)
        self.assertEqual(json.loads(body)['error']['code'], 'unavailable', data)
        self.assertEqual(gw.proc.wait_exit(timeout=5), 0)
        gw.proc.check_sanitizer()

    def test_gateway_sigterm_while_requests_wait_on_the_service(self):
        # Requests are waiting for a reply that will not come (the service is stopped with
        # SIGSTOP, the NATS timeout is long): SIGTERM still ends the gateway within 5 s and
        # each waiting client gets an answer.
        st = self.stack
        gw = st.add_gateway(nats_timeout_ms=30000)
        with st.nats_client() as watcher:
            sid = watcher.subscribe('webhooks.get')
            watcher.flush()
            st.svc.proc.pause()
            self.addCleanup(st.svc.proc.resume)
            n = 5
            with concurrent.futures.ThreadPoolExecutor(n) as ex:
                futs = [ex.submit(gw.request, 'GET', '/webhooks/' + UNKNOWN_ID, None, None, True, 20)
                        for _ in range(n)]
                for _ in range(n):  # all n requests are now waiting in the gateway
                    watcher.next_msg(sid, timeout=10)
                rc, took = gw.stop(timeout=8)
                results = [f.result(timeout=20) for f in futs]
        self.assertEqual(rc, 0)
        self.assertLess(took, 5.0, 'SIGTERM took %.2fs' % took)
        for r in results:
            self.assertError(r, 503, 'unavailable')

    def test_service_sigterm_with_writes_in_flight(self):
        gw, svc = self.gw, self.stack.svc
        gw_fast = self.stack.add_gateway(nats_timeout_ms=3000)
        load = Load(lambda w, i: gw_fast.request('POST', '/webhooks',
                                                 {'targetUrl': 'http://127.0.0.1:9/t/%d/%d' % (w, i)}))
        try:
            load.wait_results(60, timeout=20)
            rc, took = svc.stop()
            load.wait_results(len(load.results) + 16, timeout=20)
        finally:
            load.stop()
        self.assertEqual(rc, 0)
        self.assertLess(took, 5)
        # Every request that reached the service before it stopped was answered: no 504.
        self.assertLessEqual(load.statuses(), {201, 503}, load.statuses())
        acked = [j for s, j in load.results if s == 201]
        svc.start()
        gw.wait_healthy(timeout=10)
        stored = {h['id']: h['targetUrl'] for h in gw.list_all()}
        missing = [j for j in acked if stored.get(j['id']) != j['targetUrl']]
        self.assertEqual(missing, [])


if __name__ == '__main__':
    harness.main()
