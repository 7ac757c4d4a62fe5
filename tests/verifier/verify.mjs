// verify.mjs -- run the Standard Webhooks reference verifier (npm standardwebhooks) over
// captured requests. Usage: node verify.mjs MODULES_DIR < cases.json
// cases.json: [{"secret": "whsec_...", "headers": {name: value}, "body": "<exact body>",
//               "nowOffsetSeconds": 0}, ...]
// Prints one JSON array: for each case {"ok": true} or {"ok": false, "error": "<why>"}.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import path from 'node:path';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node verify.mjs MODULES_DIR < cases.json');
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(dir), 'package.json'));
const { Webhook } = require('standardwebhooks');

const cases = JSON.parse(readFileSync(0, 'utf8'));
const realNow = Date.now;
const out = cases.map((c) => {
  const offset = (c.nowOffsetSeconds || 0) * 1000;
  Date.now = () => realNow() + offset;
  try {
    new Webhook(c.secret).verify(c.body, c.headers);
    return { ok: true };
  } catch (e) {
    return { ok: false, error: String(e && e.message ? e.message : e) };
  } finally {
    Date.now = realNow;
  }
});
process.stdout.write(JSON.stringify(out) + '\n');
