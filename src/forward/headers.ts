import type { IncomingHttpHeaders } from 'node:http';

/** RFC 9110 §7.6.1 hop-by-hop headers, plus the legacy ones proxies also drop. */
const HOP_BY_HOP = new Set([
  // undici cannot forward `Expect: 100-continue`; Node already answered it to the client.
  'expect',
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
]);

/**
 * Headers some upstream frameworks act on that would undo certbound's path and method checks
 * (IIS/Symfony URL rewrites, method overrides): never forwarded.
 */
const REWRITES = new Set(['x-original-url', 'x-rewrite-url', 'x-http-method-override', 'x-http-method', 'x-method-override']);

/** Client-address headers: kept only from a trusted proxy, like X-Forwarded-For. */
const CLIENT_ADDRESS = new Set(['x-real-ip', 'true-client-ip', 'x-client-ip', 'cf-connecting-ip', 'fastly-client-ip', 'x-cluster-client-ip', 'client-ip']);

/** Names listed in `Connection` are hop-by-hop too. */
function connectionListed(c: string | string[] | undefined): Set<string> | undefined {
  // `keep-alive` is hop-by-hop already: the common value needs no parsing.
  if (typeof c !== 'string' || c === '' || c === 'keep-alive') return undefined;
  return new Set(c.split(',').map((t) => t.trim().toLowerCase()).filter(Boolean));
}

export interface ForwardedHeaderInput {
  readonly incoming: IncomingHttpHeaders;
  /** Lower-case names to drop: certificate headers, identity headers, Authorization when not forwarded. */
  readonly strip: ReadonlySet<string>;
  /** Headers certbound sets (identity headers, forwarded certificate, interaction id). */
  readonly add: Readonly<Record<string, string>>;
  readonly peer: string;
  /** Existing X-Forwarded-* are kept (and extended) only when the peer is a trusted proxy. */
  readonly peerTrusted: boolean;
  readonly proto: 'http' | 'https';
  readonly keepUpgrade?: boolean;
}

/** The request headers the upstream receives. */
export function upstreamRequestHeaders(input: ForwardedHeaderInput): Record<string, string | string[]> {
  const { incoming, strip } = input;
  const listed = connectionListed(incoming.connection);
  const out: Record<string, string | string[]> = {};
  for (const name in incoming) {
    const value = incoming[name];
    if (value === undefined) continue;
    if (HOP_BY_HOP.has(name) || strip.has(name) || listed?.has(name) || REWRITES.has(name)) continue;
    if (!input.peerTrusted && CLIENT_ADDRESS.has(name)) continue;
    if (name === 'host' || name.startsWith('x-forwarded-') || name === 'forwarded') continue;
    out[name] = value;
  }
  if (input.keepUpgrade && incoming.upgrade) {
    out.connection = 'upgrade';
    out.upgrade = incoming.upgrade;
  }
  const host = incoming.host;
  const priorFor = input.peerTrusted ? incoming['x-forwarded-for'] : undefined;
  out['x-forwarded-for'] = priorFor ? `${priorFor}, ${input.peer}` : input.peer;
  out['x-forwarded-proto'] = (input.peerTrusted ? firstValue(incoming['x-forwarded-proto']) : undefined) ?? input.proto;
  const fwdHost = (input.peerTrusted ? firstValue(incoming['x-forwarded-host']) : undefined) ?? host;
  if (fwdHost) out['x-forwarded-host'] = fwdHost;
  for (const name in input.add) out[name] = input.add[name] as string;
  return out;
}

const firstValue = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);

/** The response headers the client receives: upstream's minus hop-by-hop. */
export function clientResponseHeaders(upstream: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const listed = connectionListed(upstream.connection);
  const out: Record<string, string | string[]> = {};
  for (const name in upstream) {
    const value = upstream[name];
    if (value === undefined || HOP_BY_HOP.has(name) || listed?.has(name)) continue;
    out[name] = value;
  }
  return out;
}
