import t from 'tap';
import { Writable } from 'node:stream';
import { createAccessLog, createLogger, type Logger } from '../../src/observability/logger.js';

function capture(level = 'info') {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return { log: createLogger(level, sink), lines };
}
const parsed = (line: string | undefined) => JSON.parse(line ?? 'null') as Record<string, unknown>;

t.test('an access line has the shape of every pino line, in order with them', async (t) => {
  const { log, lines } = capture();
  const access = createAccessLog(log);
  const fields = { msg: 'request', route: 'a"b\\c\nd', status: 200, latency_ms: 1.25, client_id: 'tpp-é' };
  log.info({ msg: 'before' });
  access(fields);
  log.info(fields);
  t.equal(lines.length, 3);
  t.equal(parsed(lines[0]).msg, 'before', 'written to the same destination, in order');
  const fast = parsed(lines[1]);
  const slow = parsed(lines[2]);
  t.match(fast.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  t.same({ ...fast, time: 0 }, { ...slow, time: 0 }, 'the same JSON as pino writes for the same fields');
  t.same(Object.keys(fast), Object.keys(slow), 'in the same order');
  t.same(Object.keys(fast).slice(0, 4), ['level', 'time', 'service', 'msg']);
  t.equal(fast.route, 'a"b\\c\nd', 'strings escaped');
  t.notMatch(lines[1], /\n/, 'one line per entry');
});

t.test('undefined fields are left out; an empty line is still valid JSON', async (t) => {
  const { log, lines } = capture();
  const access = createAccessLog(log);
  access({ msg: 'request', reason: undefined, status: 401 });
  access({});
  t.same({ ...parsed(lines[0]), time: 0 }, { level: 'info', time: 0, service: 'certbound', msg: 'request', status: 401 });
  t.same({ ...parsed(lines[1]), time: 0 }, { level: 'info', time: 0, service: 'certbound' });
});

t.test("a child logger's bindings are kept", async (t) => {
  const { log, lines } = capture();
  createAccessLog(log.child({ pod: 'p-1' }))({ msg: 'request' });
  t.same({ ...parsed(lines[0]), time: 0 }, { level: 'info', time: 0, service: 'certbound', pod: 'p-1', msg: 'request' });
});

t.test('the level is read on every line: a reload that raises it silences access lines at once', async (t) => {
  const { log, lines } = capture();
  const access = createAccessLog(log);
  access({ msg: 'request', n: 1 });
  log.level = 'warn';
  access({ msg: 'request', n: 2 });
  log.level = 'info';
  access({ msg: 'request', n: 3 });
  t.same(lines.map((l) => parsed(l).n), [1, 3]);
  const quiet = capture('warn');
  createAccessLog(quiet.log)({ msg: 'request' });
  t.same(quiet.lines, []);
});

t.test('a logger without a pino destination falls back to its own info()', async (t) => {
  const seen: unknown[] = [];
  const fake = { isLevelEnabled: () => true, bindings: () => ({}), info: (line: unknown) => void seen.push(line) } as unknown as Logger;
  createAccessLog(fake)({ msg: 'request', status: 200 });
  t.same(seen, [{ msg: 'request', status: 200 }]);
});
