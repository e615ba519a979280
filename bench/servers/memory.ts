// Fills the token validator's cache with distinct tokens through the real introspection client,
// then reports the process's memory. Run in its own process so nothing else is in the figure.
import { buildConfig } from '../../src/config/load.js';
import { createTokenValidator } from '../../src/token/index.js';

const { introspectionEndpoint, tokens, concurrency } = JSON.parse(process.argv[2] ?? '{}') as {
  introspectionEndpoint: string;
  tokens: number;
  concurrency: number;
};

const config = buildConfig(
  {
    authorization_server: {
      issuer: 'https://as.bench',
      introspection_endpoint: introspectionEndpoint,
      client_id: 'certbound',
      client_secret: 'bench',
      max_concurrent_requests: concurrency,
      cache: { max_entries: tokens, max_ttl_seconds: 3600 },
    },
    upstreams: { bank: 'http://127.0.0.1:9' },
    routes: [{ name: 'accounts', path_prefix: '/', methods: ['GET'], upstream: 'bank', auth: 'certificate_bound_token' }],
  },
  { env: {} },
);
const as = config.authorizationServer;
if (!as) throw new Error('no authorization_server in the config');
const validator = createTokenValidator(as);

const gc = (globalThis as { gc?: () => void }).gc;
const mb = (bytes: number) => Math.round(bytes / 1048576);
gc?.();
const before = process.memoryUsage();
const started = performance.now();
let next = 0;
let errors = 0;
// Realistic opaque tokens: 43 base64url characters (256 bits), as most authorization servers issue.
const tokenOf = (i: number) => `${'A'.repeat(36)}${i.toString(36).padStart(7, '0')}`;
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    while (next < tokens) {
      const token = tokenOf(next++);
      // A busy machine can make an introspection time out (as_unavailable): tried again, up to 3 times.
      for (let attempt = 1; attempt <= 3; attempt++) {
        try {
          await validator.validate(token);
          break;
        } catch {
          errors++;
        }
      }
    }
  }),
);
const seconds = (performance.now() - started) / 1000;
const entries = validator.cache.keys().length;
gc?.();
const after = process.memoryUsage();
process.stdout.write(
  `${JSON.stringify({
    tokens,
    entries,
    errors,
    seconds: Math.round(seconds),
    rssBeforeMb: mb(before.rss),
    rssAfterMb: mb(after.rss),
    heapUsedAfterMb: mb(after.heapUsed),
    bytesPerEntry: Math.round((after.heapUsed - before.heapUsed) / Math.max(1, entries)),
  })}\n`,
);
// The parent reads VmHWM before we go.
process.once('SIGTERM', () => process.exit(0));
setInterval(() => undefined, 1000);
