"""test_ipv6.py -- the caller's address for GET /ip over IPv6 reaches the targets as it is."""

import unittest

from delivery_helpers import DeliveryCase, harness, main


@unittest.skipUnless(harness.has_ipv6_loopback(), '::1 is not available')
class Ipv6CallerTest(DeliveryCase):

    def check_delivered_ip(self, gw, ip, path):
        self.register(path)
        ev, _ = self.trigger(gw=gw)
        self.assertEqual(ev['ipAddress'], ip, ev)
        s = self.wait_event(ev['eventId'], 10)
        self.assertEqual((s['succeeded'], s['ipAddress']), (1, ip), s)
        reqs = self.target.by_path()[path]
        self.assertEqual(len(reqs), 1, reqs)
        self.assertDeliveryRequest(reqs[0], ip=ip)
        self.delete(self.gw.list_all()[0]['id'])
        self.target.reset()

    def test_gateway_on_ipv6_loopback(self):
        gw6 = self.stack.add_gateway(bind='::1')
        self.check_delivered_ip(gw6, '::1', '/ok/v6')

    def test_dual_stack_gateway(self):
        # Bound to "::": an IPv6 caller is ::1, an IPv4 caller is 127.0.0.1 (not ::ffff:...).
        gw = self.stack.add_gateway(bind='::')
        gw.host = '::1'
        self.check_delivered_ip(gw, '::1', '/ok/dual6')
        gw.host = '127.0.0.1'
        self.check_delivered_ip(gw, '127.0.0.1', '/ok/dual4')


if __name__ == '__main__':
    main()
