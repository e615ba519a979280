import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { once, type EventEmitter } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { DestinationStream } from 'pino';
import { createLogger, createLogging, logDestination } from '../../src/observability/logger.js';
import type { RequestRecord } from '../../src/observability/record.js';
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
  return { ...createLogging(level, sink), lines, writes };
}
/** Access lines leave at the end of the event-loop turn. */
const turn = () => new Promise((resolve) => setImmediate(resolve));
const parsed = (line: string | undefined) => JSON.parse(line ?? 'null') as Record<string, unknown>;
/** What each line is: an access line's `n` (its response_bytes), or a pino line's msg. */
const seen = (lines: readonly string[]) => lines.map((l) => (parsed(l).msg === 'request' ? parsed(l).response_bytes : parsed(l).msg));

const request = (n: number, more: Partial<RequestRecord> = {}): RequestRecord => ({
  interactionId: '0b6b2e31-1c2e-4e4b-9b8a-4f1e2d3c4b5a', route: 'accounts', method: 'GET', path: '/accounts/1', upstream: 'bank',
  status: 200, reason: undefined, outcome: 'forwarded', latencySeconds: 0.001, upstreamSeconds: 0.0005, responseBytes: n,
  clientId: 'tpp-a', thumbprint: undefined, peer: '127.0.0.1', ...more,
});

t.test('access lines of one turn are written together; a pino line takes the waiting ones along first', async (t) => {
  const { log, access, lines, writes } = capture();
  log.info({ msg: 'before' });
  access(request(1));
  access(request(2));
  t.same(seen(lines), ['before'], 'access lines wait for the end of the turn');
  await turn();
  t.same(seen(lines), ['before', 1, 2]);
  t.equal(writes.length, 2, 'one write for the turn');

  access(request(3));
  log.warn({ msg: 'after 3' });
  access(request(4));
  access(request(5));
  log.error({ msg: 'after 5' });
  access(request(6));
  t.same(seen(lines).slice(3), [3, 'after 3', 4, 5, 'after 5'], 'in the order written, the waiting lines in the same write as the pino line');
  await turn();
  t.same(seen(lines).slice(3), [3, 'after 3', 4, 5, 'after 5', 6]);
  await turn();
  t.equal(lines.length, 9, 'nothing written twice');

  const big = 'x'.repeat(70_000);
  access(request(7, { path: `/${big}` }));
  t.equal(lines.length, 10, 'over 64 KiB waiting: written at once');
  t.equal(parsed(lines[9]).path, `/${big}`);
});

t.test('order holds across many turns and batches', async (t) => {
  const { log, access, lines } = capture();
  const expected: Array<number | string> = [];
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 3 + (round % 4) * 40; i++) {
      const n = round * 1000 + i;
      if (i % 7 === 3) {
        log.info({ msg: `pino ${n}` });
        expected.push(`pino ${n}`);
      } else {
        access(request(n, { clientId: 'c'.repeat(round * 50) }));
        expected.push(n);
      }
    }
    if (round % 3 !== 0) await turn();
  }
  await turn();
  t.same(seen(lines), expected);
});

t.test('the level is read on every line: a reload that raises it to warn silences access lines at once', async (t) => {
  const { log, access, lines } = capture();
  access(request(1));
  log.level = 'warn';
  access(request(2));
  log.info({ msg: 'quiet' });
  log.warn({ msg: 'loud' });
  log.level = 'info';
  access(request(3));
  await turn();
  t.same(seen(lines), [1, 'loud', 3]);

  const quiet = capture('warn');
  quiet.access(request(1));
  await turn();
  t.same(quiet.lines, [], 'a logger created at warn writes none');
  const silent = capture('silent');
  silent.access(request(1));
  silent.log.fatal({ msg: 'x' });
  await turn();
  t.same(silent.lines, []);
});

t.test('pino lines are still redacted, in the same shape as access lines', async (t) => {
  const { log, access, lines } = capture();
  log.info({ msg: 'introspection', token: 'tok-1', authorization: 'Bearer tok-1', client_secret: 's3cret', private_key: 'PRIVATE KEY', dpop: 'ey.proof.sig', proof: 'ey.proof.sig', nonce_secret: 'n0nce', kept: 1 });
  access(request(1));
  await turn();
  t.same({ ...parsed(lines[0]), time: 0 }, {
    level: 'info', time: 0, service: 'certbound', msg: 'introspection',
    token: '[redacted]', authorization: '[redacted]', client_secret: '[redacted]', private_key: '[redacted]',
    dpop: '[redacted]', proof: '[redacted]', nonce_secret: '[redacted]', kept: 1,
  });
  t.notMatch(lines.join('\n'), /tok-1|s3cret|PRIVATE KEY|ey\.proof|n0nce/);
  t.same(Object.keys(parsed(lines[1])).slice(0, 4), Object.keys(parsed(lines[0])).slice(0, 4), 'level, time, service, msg: the same envelope');
});

t.test("logger.flush() writes the waiting access lines first, then flushes the destination", async (t) => {
  const { log, access, lines } = capture();
  access(request(1));
  await new Promise<void>((resolve) => log.flush(() => resolve()));
  t.same(seen(lines), [1], 'a destination without flush(): called back at once');

  const dir = mkdtempSync(join(tmpdir(), 'certbound-flush-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'flush.log');
  const dest = logDestination(10_000, file);
  t.teardown(() => (dest as DestinationStream & { end(): void }).end());
  await once(dest as unknown as EventEmitter, 'ready');
  const logging = createLogging('info', dest);
  logging.log.info({ msg: 'first' });
  logging.access(request(2));
  t.equal(readFileSync(file, 'utf8'), '', 'held: below 8 KiB, within the flush interval');
  await new Promise<void>((resolve, reject) => logging.log.flush((err) => (err ? reject(err) : resolve())));
  t.same(seen(readFileSync(file, 'utf8').split('\n').filter(Boolean)), ['first', 2], 'both on disk, in order, when flush calls back');
});

t.test('lines still waiting when the process exits are written (pino.destination flushes them on exit)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'certbound-exit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const child = new URL('../observability/fixtures/exit-with-lines.ts', import.meta.url).pathname;
  for (const how of ['exit', 'throw'] as const) {
    const file = join(dir, `${how}.log`);
    const code = await new Promise<number | null>((resolve) => {
      execFile(process.execPath, [...process.execArgv, child, file, how], { timeout: 120_000 }, (error) => resolve(error ? (typeof error.code === 'number' ? error.code : null) : 0));
    });
    t.equal(code, how === 'exit' ? 0 : 1, `${how}: the child ended as asked`);
    t.same(seen(readFileSync(file, 'utf8').split('\n').filter(Boolean)), ['started', 1, 2, 'between', 3, 4], `${how}: every line, in order`);
  }
});

t.test('createLogger: the logger alone, same shape', async (t) => {
  const lines: string[] = [];
  const log = createLogger('info', new Writable({ write: (c: Buffer, _e, done) => void (lines.push(c.toString()), done()) }));
  log.child({ pod: 'p-1' }).info({ msg: 'hello' });
  t.same({ ...parsed(lines[0]), time: 0 }, { level: 'info', time: 0, service: 'certbound', pod: 'p-1', msg: 'hello' });
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
