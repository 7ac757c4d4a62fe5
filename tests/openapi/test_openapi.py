"""test_openapi.py -- docs/openapi.yaml is true to the gateway that really runs, and lint-clean.

  * SpecTest (no processes): every path literal of route_match() in gateway/route.c has its
    place in the file's paths, and the error codes and their statuses are common/envelope.c's.
  * LiveTest: the real stack (tests/integration/harness.py: nats-server, webhooks-svc,
    webhooks-gateway), with a webhook, an event and a failed delivery to point at. Every
    documented operation is served (neither 404 nor 405 with ids that exist), with each of its
    request examples, and answers a status the file lists, with a body that the file's schema
    accepts and the headers it says; admin operations answer 401 without the token and public
    ones do not; every other method on a documented path is a 405 whose Allow header is
    exactly the documented methods (HEAD wherever GET); HEAD answers wherever GET does. The
    paths route.c can make (each top-level path, each id prefix alone and with each suffix) are
    probed with every method, and every one the gateway serves must be in the file.
  * LintTest: Redocly CLI (pinned in package-lock.json, installed into the build tree by the
    fixture openapi_install, scripts/npm-install.sh) lints the file with the recommended rules
    (redocly.yaml): any error or warning fails. It runs with offline.cjs preloaded, which
    refuses every connection and DNS lookup, and telemetry and the update check off.

Environment (set by ctest): WEBHOOKS_BIN_DIR, NATS_SERVER, OPENAPI_MODULES (the node_modules
of the linter), NODE (the node binary). PyYAML (Debian python3-yaml) reads the file.
"""

import json
import os
import re
import subprocess
import sys
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, '..', '..'))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))

import harness  # noqa: E402
import yaml  # noqa: E402  (python3-yaml, scripts/packages.txt)

SPEC_PATH = os.path.join(ROOT, 'docs', 'openapi.yaml')
ROUTE_C = os.path.join(ROOT, 'gateway', 'route.c')
ENVELOPE_C = os.path.join(ROOT, 'common', 'envelope.c')
HTTP_METHODS = ('get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace')
# What every path is probed with (TRACE and CONNECT are libmicrohttpd's business).
PROBE_METHODS = ('GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS')


def load_spec():
    with open(SPEC_PATH, encoding='utf-8') as f:
        return yaml.safe_load(f)


def operations(spec):
    """{path: {METHOD: operation}} of the file, HEAD never among them."""
    out = {}
    for path, item in spec['paths'].items():
        out[path] = {m.upper(): op for m, op in item.items() if m in HTTP_METHODS}
    return out


def allowed(methods):
    """The Allow set of a path with these documented methods: HEAD goes with GET."""
    return set(methods) | ({'HEAD'} if 'GET' in methods else set())


# ---------------------------------------------------------------------------------------------
# What the file says: $ref, and a JSON Schema check of the subset the file uses

ANNOTATIONS = {'description', 'title', 'summary', 'examples', 'example', 'default', 'format',
               'deprecated', 'readOnly', 'writeOnly'}


def resolve(spec, node):
    """node with its $ref (a local '#/...' pointer) followed, as often as it takes."""
    while isinstance(node, dict) and '$ref' in node:
        ref = node['$ref']
        if not ref.startswith('#/'):
            raise AssertionError('only local $refs are supported here: %r' % ref)
        node = spec
        for part in ref[2:].split('/'):
            node = node[part.replace('~1', '/').replace('~0', '~')]
    return node


def type_ok(value, t):
    return {
        'null': value is None,
        'boolean': isinstance(value, bool),
        'integer': isinstance(value, int) and not isinstance(value, bool),
        'number': isinstance(value, (int, float)) and not isinstance(value, bool),
        'string': isinstance(value, str),
        'array': isinstance(value, list),
        'object': isinstance(value, dict),
    }[t]


def validate(spec, schema, value, where='$'):
    """The ways value breaks schema (JSON Schema 2020-12, the keywords this file uses; an
    unknown keyword fails loudly rather than passing unchecked). [] when it conforms."""
    schema = resolve(spec, schema)
    errs = []
    for key in schema:
        if key in ANNOTATIONS or key == '$ref':
            continue
        if key not in ('type', 'properties', 'required', 'additionalProperties', 'items', 'enum',
                       'const', 'allOf', 'anyOf', 'oneOf', 'minimum', 'maximum', 'minLength',
                       'maxLength', 'pattern'):
            raise AssertionError('%s: schema keyword %r is not checked by this test: teach '
                                 'validate() about it' % (where, key))
    if 'type' in schema:
        types = schema['type'] if isinstance(schema['type'], list) else [schema['type']]
        if not any(type_ok(value, t) for t in types):
            return ['%s: %r is not of type %s' % (where, value, '/'.join(types))]
    if 'const' in schema and value != schema['const']:
        errs.append('%s: %r is not %r' % (where, value, schema['const']))
    if 'enum' in schema and value not in schema['enum']:
        errs.append('%s: %r is not one of %r' % (where, value, schema['enum']))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if 'minimum' in schema and value < schema['minimum']:
            errs.append('%s: %r < %r' % (where, value, schema['minimum']))
        if 'maximum' in schema and value > schema['maximum']:
            errs.append('%s: %r > %r' % (where, value, schema['maximum']))
    if isinstance(value, str):
        if 'minLength' in schema and len(value) < schema['minLength']:
            errs.append('%s: %r is shorter than %d' % (where, value, schema['minLength']))
        if 'maxLength' in schema and len(value) > schema['maxLength']:
            errs.append('%s: %r is longer than %d' % (where, value, schema['maxLength']))
        if 'pattern' in schema and not re.search(schema['pattern'], value):
            errs.append('%s: %r does not match %s' % (where, value, schema['pattern']))
    if isinstance(value, dict):
        props = schema.get('properties', {})
        for name in schema.get('required', []):
            if name not in value:
                errs.append('%s: member %r is missing' % (where, name))
        for name, v in value.items():
            if name in props:
                errs += validate(spec, props[name], v, '%s.%s' % (where, name))
            elif schema.get('additionalProperties', True) is False:
                errs.append('%s: member %r is not in the schema' % (where, name))
            elif isinstance(schema.get('additionalProperties'), dict):
                errs += validate(spec, schema['additionalProperties'], v, '%s.%s' % (where, name))
    if isinstance(value, list) and 'items' in schema:
        for i, v in enumerate(value):
            errs += validate(spec, schema['items'], v, '%s[%d]' % (where, i))
    for sub in schema.get('allOf', []):
        errs += validate(spec, sub, value, where)
    if 'anyOf' in schema and all(validate(spec, s, value, where) for s in schema['anyOf']):
        errs.append('%s: %r matches none of anyOf' % (where, value))
    if 'oneOf' in schema:
        n = sum(1 for s in schema['oneOf'] if not validate(spec, s, value, where))
        if n != 1:
            errs.append('%s: %r matches %d of oneOf, not exactly 1' % (where, value, n))
    return errs


def request_examples(spec, op):
    """[(name, body)] of the operation's JSON request examples; [('no body', None)] when it
    has no request body or the body is optional."""
    rb = resolve(spec, op.get('requestBody'))
    if not rb:
        return [('no body', None)]
    media = rb.get('content', {}).get('application/json', {})
    out = []
    if 'example' in media:
        out.append(('example', media['example']))
    for name, ex in (media.get('examples') or {}).items():
        out.append(('examples.' + name, resolve(spec, ex)['value']))
    if not rb.get('required', False):
        out.append(('no body', None))
    if not out:
        raise AssertionError('a request body without an example: give it one, the test sends it')
    return out


def media_key(ctype):
    """A Content-Type compared as the file spells media types: lower case, '; ' between."""
    return '; '.join(p.strip() for p in ctype.lower().split(';') if p.strip())


# ---------------------------------------------------------------------------------------------
# What the code says

def route_c_paths():
    """The path literals of route_match() in gateway/route.c, by role: tops (a whole path,
    strcmp(path, ...)), prefixes (an id follows, strncmp(path, ...)), suffixes (after the id,
    strcmp(slash, ...)). Any other "/..." literal there is an error: the test cannot place it."""
    with open(ROUTE_C, encoding='utf-8') as f:
        text = f.read()
    text = re.sub(r'/\*.*?\*/', ' ', text, flags=re.S)
    text = re.sub(r'//[^\n]*', ' ', text)
    m = re.search(r'^enum route_id route_match\(.*?^}', text, flags=re.S | re.M)
    if m is None:
        raise AssertionError('route_match() not found in %s' % ROUTE_C)
    body = m.group(0)
    tops = re.findall(r'\bstrcmp\(\s*path\s*,\s*"([^"]*)"\s*\)', body)
    prefixes = re.findall(r'\bstrncmp\(\s*path\s*,\s*"([^"]*)"', body)
    suffixes = re.findall(r'\bstrcmp\(\s*slash\s*,\s*"([^"]*)"\s*\)', body)
    known = set(tops) | set(prefixes) | set(suffixes)
    stray = sorted(set(re.findall(r'"(/[^"]*)"', body)) - known)
    if stray:
        raise AssertionError('route_match() has path literals whose role this test cannot '
                             'tell (not strcmp(path, ..), strncmp(path, ..) or strcmp(slash, '
                             '..)): %r; teach route_c_paths() about them' % stray)
    if not tops or not prefixes or not suffixes:
        raise AssertionError('route_match() no longer reads as this test expects: tops %r, '
                             'prefixes %r, suffixes %r' % (tops, prefixes, suffixes))
    return sorted(set(tops)), sorted(set(prefixes)), sorted(set(suffixes))


def envelope_codes():
    """{code: HTTP status} of common/envelope.c."""
    with open(ENVELOPE_C, encoding='utf-8') as f:
        pairs = re.findall(r'\[ERR_\w+\]\s*=\s*\{\s*"(\w+)"\s*,\s*(\d+)\s*\}', f.read())
    if not pairs:
        raise AssertionError('no error codes found in %s' % ENVELOPE_C)
    return {code: int(status) for code, status in pairs}


def error_codes_of(spec, schema):
    """The codes an error schema allows: the const or enum of error.code in it or its allOf."""
    schema = resolve(spec, schema)
    codes = None
    for part in [schema] + list(schema.get('allOf', [])):
        part = resolve(spec, part)
        code = (((part.get('properties') or {}).get('error') or {}).get('properties')
                or {}).get('code')
        if code is None:
            continue
        code = resolve(spec, code)
        here = ({code['const']} if 'const' in code
                else set(code['enum']) if 'enum' in code else None)
        if here is not None:
            codes = here if codes is None else codes & here
    return codes


class SpecTest(unittest.TestCase):
    """The file against the source, without running anything."""

    @classmethod
    def setUpClass(cls):
        cls.spec = load_spec()
        cls.ops = operations(cls.spec)

    def test_openapi_3_1(self):
        self.assertEqual(self.spec.get('openapi'), '3.1.0')
        self.assertTrue(self.ops)

    def test_route_c_literals_are_documented(self):
        tops, prefixes, suffixes = route_c_paths()
        paths = set(self.ops)
        for top in tops:
            self.assertIn(top, paths, 'route.c serves %s: document it in %s' % (top, SPEC_PATH))
        for prefix in prefixes:
            self.assertTrue(any(re.fullmatch(re.escape(prefix) + r'\{[^}/]+\}', p) for p in paths),
                            'route.c serves %s{id}: document it' % prefix)
        for suffix in suffixes:
            self.assertTrue(any(re.search(r'\}' + re.escape(suffix) + '$', p) for p in paths),
                            'route.c serves .../{id}%s: document it' % suffix)

    def test_error_codes_are_envelope_c(self):
        codes = envelope_codes()
        schemas = self.spec['components']['schemas']
        self.assertEqual(sorted(schemas['ErrorCode']['enum']), sorted(codes),
                         'ErrorCode must list exactly the codes of common/envelope.c')
        seen = 0
        for path, ops in self.ops.items():
            for method, op in ops.items():
                for status, resp in op['responses'].items():
                    resp = resolve(self.spec, resp)
                    media = (resp.get('content') or {}).get('application/json')
                    if not str(status).startswith(('4', '5')):
                        continue
                    self.assertIsNotNone(media, '%s %s %s: an error without a JSON body'
                                         % (method, path, status))
                    allowed_codes = error_codes_of(self.spec, media['schema'])
                    self.assertTrue(allowed_codes, '%s %s %s: the error schema names no code'
                                    % (method, path, status))
                    for code in allowed_codes:
                        self.assertEqual(codes.get(code), int(status),
                                         '%s %s: %s is documented as %s, envelope.c answers %s'
                                         % (method, path, code, status, codes.get(code)))
                    seen += 1
        self.assertGreater(seen, 0)


# ---------------------------------------------------------------------------------------------
# The running gateway

class LiveTest(harness.IntegrationCase):
    """Each documented (path, method) against the real gateway, and the other way round."""

    # One attempt and no retry: the failed delivery the replay and the attempts need comes
    # at once.
    stack_options = {'svc_env': {'MAX_RETRIES': '0'}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.make_records()
        except BaseException:
            cls.tearDownClass()  # unittest does not call it when setUpClass fails
            raise

    @classmethod
    def make_records(cls):
        cls.spec = load_spec()
        cls.ops = operations(cls.spec)
        gw = cls.stack.gateway
        # A webhook whose target refuses connections (nothing listens on a free port), and
        # an event whose one delivery to it has failed.
        cls.webhook_id = gw.register('http://127.0.0.1:%d/openapi' % harness.free_port()).json['id']
        r = gw.request('GET', '/ip', auth=False)
        if r.status != 202:
            raise AssertionError('GET /ip: %r' % (r,))
        cls.event_id = r.json['eventId']

        def ended():
            e = gw.request('GET', '/events/' + cls.event_id).json
            return e['pending'] == 0 and e['failed'] >= 1
        harness.poll_until(ended, 30, what='the event\'s delivery failed')
        # The delivery and its attempt are what the Delivery and Attempt schemas are checked on.
        page = gw.request('GET', '/events/%s/deliveries' % cls.event_id).json
        if not page['deliveries'] or not page['deliveries'][0]['attempts']:
            raise AssertionError('no delivery or attempt to check the schemas on: %r' % (page,))

    def concrete(self, template, fresh_webhook=False):
        """The template with {id} an id that exists: the webhook's or the event's by the first
        segment; a new webhook of its own for a DELETE."""
        first = template.strip('/').split('/')[0]
        if '{' not in template:
            return template
        if first == 'webhooks':
            wid = (self.gw.register('http://127.0.0.1:9/doomed').json['id'] if fresh_webhook
                   else self.webhook_id)
            return re.sub(r'\{[^}]+\}', wid, template)
        if first == 'events':
            return re.sub(r'\{[^}]+\}', self.event_id, template)
        self.fail('%s: this test knows no id for /%s/...: teach concrete() one' % (template, first))

    def check_response(self, what, op, r, head=False):
        """r is one of the operation's documented responses, body and headers."""
        responses = op['responses']
        status = str(r.status)
        self.assertIn(status, responses, '%s answered %s, which the file does not list (%s): %r'
                      % (what, status, sorted(responses), r))
        doc = resolve(self.spec, responses[status])
        for name, header in (doc.get('headers') or {}).items():
            header = resolve(self.spec, header)
            value = r.headers.get(name)
            if header.get('required'):
                self.assertIsNotNone(value, '%s: no %s header: %r' % (what, name, r))
            if value is not None:
                schema = resolve(self.spec, header['schema'])
                if schema.get('type') == 'integer' and re.fullmatch(r'-?\d+', value):
                    value = int(value)
                errs = validate(self.spec, schema, value, name)
                self.assertEqual(errs, [], '%s: header %s: %s' % (what, name, errs))
        content = doc.get('content') or {}
        if head or not content:
            self.assertEqual(r.raw, b'', '%s: a body where the file says none: %r' % (what, r))
            return
        ctype = media_key(r.headers.get('Content-Type', ''))
        keys = {media_key(k): k for k in content}
        self.assertIn(ctype, keys, '%s: Content-Type %r is not one of %r'
                      % (what, r.headers.get('Content-Type'), sorted(content)))
        media = content[keys[ctype]]
        if ctype == 'application/json':
            self.assertIsNotNone(r.json, '%s: the body is not JSON: %r' % (what, r))
            errs = validate(self.spec, media['schema'], r.json)
            self.assertEqual(errs, [], '%s: the body breaks the file\'s schema:\n  %s\n%r'
                             % (what, '\n  '.join(errs), r.json))
        else:
            errs = validate(self.spec, media['schema'], r.raw.decode('utf-8'))
            self.assertEqual(errs, [], '%s: %s' % (what, errs))

    def test_documented_operations_are_served(self):
        """With ids that exist, no documented operation is an unknown route (404) or a wrong
        method (405), and each answers as documented, with each of its request examples."""
        for template, ops in self.ops.items():
            for method, op in ops.items():
                for name, body in request_examples(self.spec, op):
                    path = self.concrete(template, fresh_webhook=method == 'DELETE')
                    with self.subTest(path=template, method=method, body=name):
                        r = self.gw.request(method, path, body)
                        what = '%s %s (%s)' % (method, template, name)
                        self.assertNotIn(r.status, (404, 405),
                                         '%s is documented but the gateway does not serve it: '
                                         '%r' % (what, r))
                        self.check_response(what, op, r)
                if method == 'GET':
                    with self.subTest(path=template, method='HEAD'):
                        r = self.gw.request('HEAD', self.concrete(template))
                        self.assertNotIn(r.status, (404, 405), 'HEAD %s: %r' % (template, r))
                        self.check_response('HEAD ' + template, op, r, head=True)

    def test_security_is_the_gateways(self):
        """An operation with security needs the token (401 without it); one with
        `security: []` answers without it."""
        default = self.spec.get('security', [])
        for template, ops in self.ops.items():
            for method, op in ops.items():
                public = op.get('security', default) == []
                path = self.concrete(template, fresh_webhook=method == 'DELETE')
                body = request_examples(self.spec, op)[0][1]
                with self.subTest(path=template, method=method):
                    r = self.gw.request(method, path, body, auth=False)
                    what = '%s %s without a token' % (method, template)
                    if public:
                        self.assertNotEqual(r.status, 401, '%s: documented as public: %r'
                                            % (what, r))
                    else:
                        self.assertEqual(r.status, 401, '%s: documented as admin: %r' % (what, r))
                    self.check_response(what, op, r)
                    r = self.gw.request(method, path, body, auth='Bearer wrong-token')
                    self.assertEqual(r.status == 401, not public, '%s with a wrong token: %r'
                                     % (method, r))

    def test_undocumented_methods_are_405(self):
        """Every method the file leaves out of a path is a 405 whose Allow header lists exactly
        the documented methods (HEAD wherever GET)."""
        for template, ops in self.ops.items():
            want = allowed(ops)
            any_op = next(iter(ops.values()))
            for method in PROBE_METHODS:
                if method in want:
                    continue
                with self.subTest(path=template, method=method):
                    r = self.gw.request(method, self.concrete(template))
                    what = '%s %s' % (method, template)
                    self.assertEqual(r.status, 405, '%s: not documented, so it must be a 405: '
                                     '%r' % (what, r))
                    got = {m.strip() for m in r.headers.get('Allow', '').split(',') if m.strip()}
                    self.assertEqual(got, want, '%s: Allow says %r, the file documents %r'
                                     % (what, sorted(got), sorted(want)))
                    self.check_response(what, any_op, r, head=method == 'HEAD')

    def test_served_paths_are_documented(self):
        """Every path route.c can make that the gateway serves (some method answers other than
        404) is in the file."""
        tops, prefixes, suffixes = route_c_paths()
        candidates = set(tops)
        for prefix in prefixes:
            candidates.add(prefix + '{id}')
            candidates.update(prefix + '{id}' + s for s in suffixes)
        documented = {re.sub(r'\{[^}]+\}', '{id}', p) for p in self.ops}
        served = set()
        for template in sorted(candidates):
            # A webhook of its own each time: DELETE is among the methods.
            path = (self.concrete(template, fresh_webhook=True)
                    if template.split('/')[1] in ('webhooks', 'events')
                    else template.replace('{id}', str(uuid.uuid4())))
            answers = {m: self.gw.request(m, path).status for m in PROBE_METHODS}
            if any(status != 404 for status in answers.values()):
                served.add(template)
                with self.subTest(path=template):
                    self.assertIn(template, documented, 'the gateway serves %s (%r) but %s does '
                                  'not document it' % (template, answers, SPEC_PATH))
        self.assertTrue(served, 'no path of route.c is served at all')


# ---------------------------------------------------------------------------------------------
# The linter

class LintTest(unittest.TestCase):
    """Redocly CLI's recommended rules, offline: no error, no warning."""

    def test_redocly_lint_clean(self):
        modules = os.environ.get('OPENAPI_MODULES', '')
        cli = os.path.join(modules, '@redocly', 'cli', 'bin', 'cli.js')
        if not os.path.isfile(cli):
            self.fail('Redocly CLI is not installed in OPENAPI_MODULES=%r: run scripts/'
                      'npm-install.sh tests/openapi <build>/openapi @redocly/cli/lib/commands/'
                      'lint.js handleLint (the ctest fixture openapi_install does)' % modules)
        env = dict(os.environ)
        env.pop('NODE_OPTIONS', None)
        # Nothing to Redocly (usage data) or the npm registry (the newest version).
        env.update(REDOCLY_TELEMETRY='off', REDOCLY_SUPPRESS_UPDATE_NOTICE='true', CI='true',
                   NO_COLOR='1')
        argv = [os.environ.get('NODE') or 'node', '--require', os.path.join(HERE, 'offline.cjs'),
                cli, 'lint', '--format=json', '--config', os.path.join(HERE, 'redocly.yaml'),
                SPEC_PATH]
        p = subprocess.run(argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        out, err = p.stdout.decode('utf-8', 'replace'), p.stderr.decode('utf-8', 'replace')
        refused = [line for line in err.splitlines() if line.startswith('offline: ')]
        self.assertEqual(refused, [], 'the linter tried to reach the network:\n' + err)
        try:
            report = json.loads(out[out.index('{'):])
        except ValueError:
            self.fail('redocly lint (exit %d) wrote no JSON report:\n%s\n%s' % (p.returncode,
                                                                               out, err))
        problems = ['%s %s: %s (%s)' % (pr['severity'], pr['ruleId'], pr['message'],
                                        ', '.join(loc.get('pointer', '') for loc in pr['location']))
                    for pr in report['problems']]
        sys.stderr.write('redocly lint %s: %s\n' % (report.get('version'), report['totals']))
        self.assertEqual(problems, [], 'redocly lint of %s:\n  %s' % (SPEC_PATH,
                                                                    '\n  '.join(problems)))
        self.assertEqual(report['totals']['errors'] + report['totals']['warnings'], 0)
        self.assertEqual(p.returncode, 0, 'redocly lint exited %d:\n%s' % (p.returncode, err))


if __name__ == '__main__':
    harness.main()
