// offline.cjs -- preloaded (node --require) into Redocly CLI by test_openapi.py, so that the
// lint proves it runs offline: every TCP connection and DNS lookup the process attempts is
// refused, and reported on stderr with the prefix "offline: ", which fails the test.
'use strict';
const dns = require('node:dns');
const net = require('node:net');

function refuse(what) {
  process.stderr.write('offline: refused ' + what + '\n');
  return new Error('offline.cjs: no network for the linter (' + what + ')');
}

// net.connect, http, https, tls and fetch (undici) all end in Socket.prototype.connect. Its
// first argument is a port, a path, options, or the array that net.connect normalized them to.
const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...args) {
  const first = Array.isArray(args[0]) ? args[0][0] : args[0];
  const path = typeof first === 'string' ? first : first && first.path;
  if (path) {
    return connect.apply(this, args); // a local socket: not the network
  }
  const host = (first && first.host) || (typeof args[1] === 'string' ? args[1] : 'localhost');
  const port = first && typeof first === 'object' ? first.port : first;
  const err = refuse('a connection to ' + host + ':' + port);
  process.nextTick(() => this.destroy(err));
  return this;
};

for (const api of [dns, dns.promises]) {
  for (const name of ['lookup', 'resolve', 'resolve4', 'resolve6', 'resolveAny']) {
    const real = api[name];
    if (typeof real !== 'function') {
      continue;
    }
    api[name] = function (hostname, ...rest) {
      const err = refuse('a DNS lookup of ' + hostname);
      if (api === dns.promises) {
        return Promise.reject(err);
      }
      const cb = rest[rest.length - 1];
      if (typeof cb === 'function') {
        process.nextTick(() => cb(err));
        return undefined;
      }
      throw err;
    };
  }
}
