// Closed-loop load with autocannon, for machines without wrk: one run, one JSON line with the
// same figures bench/lib/wrk.ts reads from wrk. Its own process, like every other load generator.
import autocannon from 'autocannon';

const { url, connections, seconds, headers } = JSON.parse(process.argv[2] ?? '{}') as {
  url: string;
  connections: number;
  seconds: number;
  headers: Record<string, string>;
};
const result = await autocannon({ url, connections, duration: seconds, headers });
process.stdout.write(
  `${JSON.stringify({
    rps: result.requests.average,
    requests: result.requests.total,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    non2xx: result.non2xx,
    socketErrors: result.errors + result.timeouts,
  })}\n`,
);
