// The access line as bytes on the destination: its members, their order, what is left out, and
// that no value (route names from the config, what the client sent, what the AS said) can bend
// the line: every one parses back to itself.
import t from 'tap';
import fc from 'fast-check';
import { Writable } from 'node:stream';
import { createLogging } from '../../src/observability/logger.js';
import { accessLineFormat } from '../../src/observability/access.js';
import type { RequestRecord } from '../../src/observability/record.js';

/** A logger and its access writer on a sink that keeps each line as the bytes it received. */
function capture() {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  return { ...createLogging('info', sink), lines };
}
/** Access lines leave at the end of the event-loop turn. */
const turn = () => new Promise((resolve) => setImmediate(resolve));
const parsed = (line: string | undefined) => JSON.parse(line ?? 'null') as Record<string, unknown>;
const withoutTime = (line: Record<string, unknown>) => ({ ...line, time: 0 });

const THUMBPRINT = 'A4DtL2JmUMhAsvJj5tKyn64SqzmuXbMrJa0n761y5v0';
const full: RequestRecord = {
  interactionId: '0b6b2e31-1c2e-4e4b-9b8a-4f1e2d3c4b5a',
  route: 'accounts',
  method: 'GET',
  path: '/accounts/1',
  upstream: 'bank',
  status: 502,
  reason: 'upstream_unavailable',
  outcome: 'error',
  latencySeconds: 0.0012344,
  upstreamSeconds: 0.25,
  responseBytes: 78,
  clientId: 'tpp-a',
  thumbprint: THUMBPRINT,
  peer: '10.0.0.7',
};
const bare: RequestRecord = {
  interactionId: '0b6b2e31-1c2e-4e4b-9b8a-4f1e2d3c4b5a',
  route: undefined,
  method: 'BREW',
  path: undefined,
  upstream: undefined,
  status: 404,
  reason: undefined,
  outcome: 'rejected',
  latencySeconds: 0.0000016,
  upstreamSeconds: undefined,
  responseBytes: 0,
  clientId: undefined,
  thumbprint: undefined,
  peer: undefined,
};

t.test('every member, in order, after the envelope every pino line has', async (t) => {
  const { log, access, lines } = capture();
  access(full);
  await turn();
  const line = parsed(lines[0]);
  t.same(Object.keys(line), [
    'level', 'time', 'service', 'msg',
    'interaction_id', 'route', 'upstream', 'method', 'path', 'status', 'outcome', 'reason',
    'latency_ms', 'upstream_latency_ms', 'response_bytes', 'client_id', 'certificate_thumbprint', 'peer',
  ]);
  t.match(line.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  t.same(withoutTime(line), {
    level: 'info', time: 0, service: 'certbound', msg: 'request',
    interaction_id: full.interactionId, route: 'accounts', upstream: 'bank', method: 'GET', path: '/accounts/1', status: 502,
    outcome: 'error', reason: 'upstream_unavailable', latency_ms: 1.234, upstream_latency_ms: 250, response_bytes: 78,
    client_id: 'tpp-a', certificate_thumbprint: THUMBPRINT, peer: '10.0.0.7',
  });

  // The same members through pino's own serializer: the same text but for the time.
  const { msg: _msg, level: _level, time: _time, service: _service, ...members } = line;
  log.info({ msg: 'request', ...members });
  t.equal(lines[1]?.replace(/"time":"[^"]*"/, ''), lines[0]?.replace(/"time":"[^"]*"/, ''), 'byte for byte what pino writes');
});

t.test('absent members are left out; no route is "none"; empty values count as absent', async (t) => {
  const { access, lines } = capture();
  access(bare);
  access({ ...bare, clientId: '', thumbprint: '', peer: '' });
  await turn();
  const expected = {
    level: 'info', time: 0, service: 'certbound', msg: 'request',
    interaction_id: bare.interactionId, route: 'none', method: 'BREW', status: 404, outcome: 'rejected', latency_ms: 0.002, response_bytes: 0,
  };
  t.same(withoutTime(parsed(lines[0])), expected);
  t.same(Object.keys(parsed(lines[0])), Object.keys(expected), 'in order');
  t.same(withoutTime(parsed(lines[1])), expected);
});

t.test('milliseconds with microsecond precision', async (t) => {
  const { access, lines } = capture();
  for (const [latencySeconds, upstreamSeconds] of [[0.0012344, 0.0012346], [1.5, 0], [0, 0.000_000_4], [12.345_678_9, 0.000_000_6]] as const) {
    access({ ...full, latencySeconds, upstreamSeconds });
  }
  await turn();
  t.same(lines.map((l) => [parsed(l).latency_ms, parsed(l).upstream_latency_ms]), [[1.234, 1.235], [1500, 0], [0, 0], [12345.679, 0.001]]);
});

t.test('never a query string, should a path carry one', async (t) => {
  const { access, lines } = capture();
  access({ ...full, path: '/accounts/1?access_token=tok-secret&x=1' });
  access({ ...full, path: '/accounts/%3F?' });
  await turn();
  t.equal(parsed(lines[0]).path, '/accounts/1');
  t.notMatch(lines[0], /tok-secret|access_token/);
  t.equal(parsed(lines[1]).path, '/accounts/%3F', 'an encoded "?" is part of the path');
});

/** Strings that break hand-made JSON or a line-oriented reader, or that are just not ASCII. */
const NASTY = [
  'a"b', 'a\\b', '\\"', '"}', '","status":200,"x":"', '"}\n{"level":"fatal","msg":"forged"}',
  '\u0000\u0001\u0007\b\t\n\u000b\f\r\u001b\u001f', '\u007f\u0080\u009f',
  '\u2028\u2029', 'line\u2028separator',
  '\ud800', '\udfff', 'x\ud83dy', '\udc00\ud800', '\ud83c\udfe6',
  'é', 'Zahlungsverkehr-Ü', '銀行', '🏦 bank', 'ﬀ\ufeff\ufffd\uffff',
  '', ' ', '</script>', '${x}', '%0a%22',
];
const STRING_FIELDS = ['route', 'method', 'path', 'upstream', 'clientId', 'peer', 'interactionId', 'thumbprint'] as const;
const MEMBER: Record<(typeof STRING_FIELDS)[number], string> = {
  route: 'route', method: 'method', path: 'path', upstream: 'upstream', clientId: 'client_id', peer: 'peer', interactionId: 'interaction_id', thumbprint: 'certificate_thumbprint',
};
/** Values the writer leaves out or rewrites by design: '' where empty means absent, '?' in a path. */
const expectedValue = (field: (typeof STRING_FIELDS)[number], value: string): string | undefined => {
  if (value === '' && (field === 'clientId' || field === 'peer' || field === 'thumbprint')) return undefined;
  return field === 'path' ? value.split('?')[0] : value;
};

/** One record with `value` in `field`: one line, valid JSON, the same members, the value back as it was. Else what went wrong. */
async function problemWith(field: (typeof STRING_FIELDS)[number], value: string): Promise<string | undefined> {
  const { access, lines } = capture();
  access({ ...full, [field]: value });
  await turn();
  const where = `${field} ${JSON.stringify(value)}`;
  if (lines.length !== 1) return `${where}: ${lines.length} lines`;
  let line: Record<string, unknown>;
  try {
    line = parsed(lines[0]);
  } catch {
    return `${where}: not JSON: ${lines[0]}`;
  }
  const expected = expectedValue(field, value);
  if (line[MEMBER[field]] !== expected) return `${where}: read back as ${JSON.stringify(line[MEMBER[field]])}`;
  const keys = expected === undefined ? FULL_KEYS.filter((k) => k !== MEMBER[field]) : FULL_KEYS;
  if (JSON.stringify(Object.keys(line)) !== JSON.stringify(keys)) return `${where}: members ${Object.keys(line).join(',')}`;
  return undefined;
}
const FULL_KEYS = [
  'level', 'time', 'service', 'msg', 'interaction_id', 'route', 'upstream', 'method', 'path', 'status', 'outcome', 'reason',
  'latency_ms', 'upstream_latency_ms', 'response_bytes', 'client_id', 'certificate_thumbprint', 'peer',
];

t.test('quotes, backslashes, control characters, U+2028, lone surrogates, non-ASCII: escaped, and read back as they were', async (t) => {
  const problems: string[] = [];
  for (const field of STRING_FIELDS) {
    for (const value of NASTY) {
      const problem = await problemWith(field, value);
      if (problem) problems.push(problem);
    }
  }
  t.same(problems, [], `${STRING_FIELDS.length * NASTY.length} values`);
});

t.test('any UTF-16 string in any string member round-trips (property)', async (t) => {
  const codeUnit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c));
  const tricky = fc.constantFrom('"', '\\', '\n', '\u2028', '\ud800', '\udc00', '?');
  await fc.assert(
    fc.asyncProperty(fc.constantFrom(...STRING_FIELDS), fc.string({ unit: fc.oneof(codeUnit, tricky), maxLength: 60 }), async (field, value) => {
      const problem = await problemWith(field, value);
      if (problem) throw new Error(problem);
    }),
    { numRuns: 300 },
  );
  t.pass('300 random strings');
});

t.test("the envelope carries the logger's bindings, JSON-escaped, or none", async (t) => {
  const time = /"time":"[^"]*"/;
  t.equal(
    accessLineFormat({ service: 'certbound', pod: 'p-"1"' })(bare).replace(time, '"time":0'),
    '{"level":"info","time":0,"service":"certbound","pod":"p-\\"1\\"","msg":"request","interaction_id":"0b6b2e31-1c2e-4e4b-9b8a-4f1e2d3c4b5a","route":"none","method":"BREW","status":404,"outcome":"rejected","latency_ms":0.002,"response_bytes":0}\n',
  );
  t.equal(
    accessLineFormat({})(bare).replace(time, '"time":0'),
    '{"level":"info","time":0,"msg":"request","interaction_id":"0b6b2e31-1c2e-4e4b-9b8a-4f1e2d3c4b5a","route":"none","method":"BREW","status":404,"outcome":"rejected","latency_ms":0.002,"response_bytes":0}\n',
  );
});

t.test('the time is toISOString of the clock, millisecond by millisecond, across seconds and back', async (t) => {
  let clock = 0;
  const line = accessLineFormat({}, () => clock);
  const timeOf = (): string => (JSON.parse(line(bare)) as { time: string }).time;
  const base = Date.UTC(2026, 11, 31, 23, 59, 59);
  const instants = [
    base, base + 5, base + 99, base + 100, base + 999, base + 1000, base + 1001, // into 2027, same and next second
    base + 999, base - 1, // the clock stepped back, within and across seconds
    0, 9, 1_000_000_000_123, Date.UTC(9999, 11, 31, 23, 59, 59, 999),
  ];
  for (const at of instants) {
    clock = at;
    t.equal(timeOf(), new Date(at).toISOString(), `at ${at}`);
  }
  // fast-check: any instant in any order, starting from any second.
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: Date.UTC(9999, 11, 31, 23, 59, 59, 999) }), { minLength: 1, maxLength: 20 }), (ats) => {
      for (const at of ats) {
        clock = at;
        if (timeOf() !== new Date(at).toISOString()) throw new Error(`at ${at}`);
      }
    }),
    { numRuns: 300 },
  );
});
