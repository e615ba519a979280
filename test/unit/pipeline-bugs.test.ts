import t, { type Test } from 'tap';
import { buildConfig } from '../../src/config/load.js';
import { compileGateway } from '../../src/gateway.js';
import { createMetrics } from '../../src/observability/metrics.js';
import type { Observers } from '../../src/pipeline.js';
import type { Logger } from '../../src/observability/logger.js';
import { serve, startUpstream } from '../helpers/servers.js';
import { call } from '../helpers/client.js';

// A bug (not bad input) while answering must still end the request: a 500 or a cut connection,
// one 'request handler failed' line, and `done` called exactly once so shutdown never waits on it.
async function harness(t: Test, pipeline: typeof import('../../src/pipeline.js'), record: Observers['record'] = () => undefined) {
  const upstream = await startUpstream();
  t.teardown(() => upstream.close());
  const config = buildConfig({
    listen: { host: '127.0.0.1', port: 0 },
    upstreams: { bank: upstream.url },
    routes: [
      { name: 'open', path_prefix: '/open', upstream: 'bank', auth: 'none' },
      { name: 'token', path_prefix: '/token', upstream: 'bank', auth: 'mtls' },
    ],
  }, { env: {} });
  const gateway = compileGateway(config);
  t.teardown(() => gateway.close());
  const errors: unknown[] = [];
  const log = { error: (line: unknown) => void errors.push(line), isLevelEnabled: () => true } as unknown as Logger;
  const obs: Observers = { metrics: createMetrics({ defaultMetrics: false }), log, record };
  let done = 0;
  const server = await serve((req, res) => {
    const request = pipeline.exchange(req, res, {}, gateway, obs, () => void done++);
    res.on('close', () => request.closed());
    request.start();
  });
  t.teardown(() => server.close());
  return { url: server.url, errors, done: () => done };
}

t.test('a bug while writing the error response: 500, logged, done once', async (t) => {
  const pipeline = await t.mockImport<typeof import('../../src/pipeline.js')>('../../src/pipeline.js', {
    '../../src/stages.js': {
      ...(await import('../../src/stages.js')),
      answerTo: () => {
        throw new TypeError('bug in errorResponse');
      },
    },
  });
  const h = await harness(t, pipeline);
  const r = await call(`${h.url}/token`); // no client certificate: a GatewayError whose response fails to build
  t.equal(r.status, 500);
  t.equal(r.text, '');
  t.match(h.errors, [{ msg: 'request handler failed', err: 'TypeError: bug in errorResponse' }]);
  t.equal(h.done(), 1);
});

t.test('a bug while recording a forwarded request: the response stands, logged, done once', async (t) => {
  const pipeline = await import('../../src/pipeline.js');
  const h = await harness(t, pipeline, () => {
    throw new TypeError('bug in the access log');
  });
  const r = await call(`${h.url}/open/x`);
  t.equal(r.status, 200, 'the upstream answer went out before recording');
  t.match(h.errors, [{ msg: 'request handler failed', err: 'TypeError: bug in the access log' }]);
  t.equal(h.done(), 1);
});
