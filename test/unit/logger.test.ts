import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { DestinationStream } from 'pino';
import { createAccessLog, createLogger, logDestination, type Logger } from '../../src/observability/logger.js';
import { delay, eventually } from '../ops/fixtures/ops.js';


function capture(level = 'info') {
  const lines: string[] = [];
  const writes: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      writes.push(chunk.toString());
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return { log: createLogger(level, sink), lines, writes };
}
/** Access lines leave at the end of the event-loop turn. */
const turn = () => new Promise((resolve) => setImmediate(resolve));
/** An object as access-line members: its JSON without the braces. */
const members = (fields: object): string => JSON.stringify(fields).slice(1, -1);
const parsed = (line: string | undefined) => JSON.parse(line ?? 'null') as Record<string, unknown>;

t.test('an access line has the shape of every pino line, in order with them', async (t) => {
  const { log, lines } = capture();
  const access = createAccessLog(log);
  const fields = { msg: 'request', route: 'a"b\\c\nd', status: 200, latency_ms: 1.25, client_id: 'tpp-é' };
  log.info({ msg: 'before' });
  access(members(fields));
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
  access(members({ msg: 'request', reason: undefined, status: 401 }));
  access(members({}));
  await turn();
  t.same({ ...parsed(lines[0]), time: 0 }, { level: 'info', time: 0, service: 'certbound', msg: 'request', status: 401 });
  t.same({ ...parsed(lines[1]), time: 0 }, { level: 'info', time: 0, service: 'certbound' });
});

t.test('access lines of one turn are written together, before any later pino line', async (t) => {
  const { log, lines, writes } = capture();
  const access = createAccessLog(log);
  access(members({ msg: 'request', n: 1 }));
  access(members({ msg: 'request', n: 2 }));
  t.same(lines, [], 'nothing written yet within the turn');
  await turn();
  t.equal(writes.length, 1, 'one write for the turn');
  t.same(lines.map((l) => parsed(l).n), [1, 2]);
  access(members({ msg: 'request', n: 3 }));
  log.warn({ msg: 'after' });
  t.same(lines.slice(2).map((l) => parsed(l).n ?? parsed(l).msg), [3, 'after'], 'a pino line takes the pending access lines along, in order');
  await turn();
  t.equal(lines.length, 4, 'nothing written twice');
  const big = 'x'.repeat(70_000);
  access(members({ msg: 'request', big }));
  t.equal(lines.length, 5, 'a batch over 64 KiB is written at once');
  t.equal(parsed(lines[4]).big, big);
});

t.test("a child logger's bindings are kept", async (t) => {
  const { log, lines } = capture();
  createAccessLog(log.child({ pod: 'p-1' }))(members({ msg: 'request' }));
  t.same({ ...parsed(lines[0]), time: 0 }, { level: 'info', time: 0, service: 'certbound', pod: 'p-1', msg: 'request' });
});

t.test('the level is read on every line: a reload that raises it silences access lines at once', async (t) => {
  const { log, lines } = capture();
  const access = createAccessLog(log);
  access(members({ msg: 'request', n: 1 }));
  log.level = 'warn';
  access(members({ msg: 'request', n: 2 }));
  log.level = 'info';
  access(members({ msg: 'request', n: 3 }));
  await turn();
  t.same(lines.map((l) => parsed(l).n), [1, 3]);
  const quiet = capture('warn');
  createAccessLog(quiet.log)(members({ msg: 'request' }));
  await turn();
  t.same(quiet.lines, []);
});

t.test('a logger without a pino destination falls back to its own info()', async (t) => {
  const seen: unknown[] = [];
  const fake = { isLevelEnabled: () => true, bindings: () => ({}), info: (line: unknown) => void seen.push(line) } as unknown as Logger;
  createAccessLog(fake)(members({ msg: 'request', status: 200 }));
  t.same(seen, [{ msg: 'request', status: 200 }]);
});

t.test('a buffered destination: lines wait for 8 KiB or the flush interval, never longer', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'certbound-log-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const read = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8') : '');
  const line = `${JSON.stringify({ msg: 'request', pad: 'x'.repeat(380) })}\n`;

  // An interval far away: a few lines stay in the buffer; 8 KiB of them are written at once.
  const slowFile = join(dir, 'slow.log');
  const slow = logDestination(10_000, slowFile) as DestinationStream & { flushSync(): void; end(): void };
  t.teardown(() => slow.end());
  slow.write(line);
  await delay(300);
  t.equal(read(slowFile), '', 'one line is held');
  for (let i = 0; i < 25; i++) slow.write(line);
  t.ok(await eventually(() => read(slowFile).length >= 8192), 'written once 8 KiB have collected');
  slow.flushSync();
  t.equal(read(slowFile), line.repeat(26), 'every line, in order, once flushed');

  // A short interval: a single line is written within it.
  const quickFile = join(dir, 'quick.log');
  const quick = logDestination(50, quickFile) as DestinationStream & { end(): void };
  t.teardown(() => quick.end());
  await delay(100); // the file is opened asynchronously
  quick.write(line);
  t.ok(await eventually(() => read(quickFile) === line, 30_000), 'the periodic flush wrote it');

  // 0: no buffering at all.
  const directFile = join(dir, 'direct.log');
  const direct = logDestination(0, directFile) as DestinationStream & { end(): void };
  t.teardown(() => direct.end());
  direct.write(line);
  t.ok(await eventually(() => read(directFile) === line, 30_000), 'written at once');
});
