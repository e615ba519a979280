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
  /** The route's drop table: certificate headers, identity headers, Authorization when not forwarded. */
  readonly drop: DropTable;
  /** Headers certbound sets (identity headers, forwarded certificate, interaction id): name, value, name, value… */
  readonly add: readonly string[];
  readonly peer: string;
  /** Existing X-Forwarded-* are kept (and extended) only when the peer is a trusted proxy. */
  readonly peerTrusted: boolean;
  readonly proto: 'http' | 'https';
}

/** Request headers as undici takes them: name, value, name, value… (no object to build per request). */
export type HeaderList = string[];

/** Why an incoming header is not forwarded as it came: dropped always, or unless the peer is a trusted proxy. */
const ALWAYS = 1;
const UNTRUSTED = 2;
type Drop = typeof ALWAYS | typeof UNTRUSTED;
/** Every header under this prefix is certbound's to set: none from a client reaches the upstream. */
const OWN_PREFIX = 'x-certbound-';
/** What is never forwarded as it came, one lookup per incoming header: the fixed lists merged with a route's own. */
export type DropTable = ReadonlyMap<string, Drop>;

/** A route's drop table, built once when its gateway is compiled. `strip`: lower-case names the route never forwards. */
export function createDropTable(strip: Iterable<string>): DropTable {
  const names = [...strip];
  const t = new Map<string, Drop>();
  for (const name of CLIENT_ADDRESS) t.set(name, UNTRUSTED);
  // x-fapi-interaction-id: certbound sends its own (the client's, when it is a UUID, or a new one) in `add`.
  // A configured name with `_` is also listed in its `-` spelling (see dashed).
  for (const name of [...HOP_BY_HOP, ...REWRITES, ...names, 'host', 'forwarded', 'x-fapi-interaction-id']) t.set(dashed(name), ALWAYS);
  for (const name of names) t.set(name, ALWAYS);
  return t;
}

const dashed = (name: string): string => name.replaceAll('_', '-');

/**
 * CGI, WSGI and PHP read `x_forwarded_for` and `x-forwarded-for` as one variable: a name with
 * `_` whose `-` spelling is protected (dropped, forwarding, certbound's own) is dropped always.
 */
function protectedAlias(name: string, drop: ReadonlyMap<string, Drop>): boolean {
  const alias = dashed(name);
  return drop.has(alias) || alias.startsWith('x-forwarded-') || alias.startsWith(OWN_PREFIX);
}

/**
 * The request headers the upstream receives. certbound's own come first (identity, forwarded
 * certificate, interaction id, X-Forwarded-*): an upstream that keeps only its first N headers
 * keeps these.
 */
export function upstreamRequestHeaders(input: ForwardedHeaderInput): HeaderList {
  const { incoming, drop } = input;
  const listed = connectionListed(incoming.connection);
  const out: HeaderList = input.add.slice();
  const priorFor = input.peerTrusted ? incoming['x-forwarded-for'] : undefined;
  out.push('x-forwarded-for', priorFor ? `${priorFor}, ${input.peer}` : input.peer);
  out.push('x-forwarded-proto', (input.peerTrusted ? firstValue(incoming['x-forwarded-proto']) : undefined) ?? input.proto);
  const fwdHost = (input.peerTrusted ? firstValue(incoming['x-forwarded-host']) : undefined) ?? incoming.host;
  if (fwdHost) out.push('x-forwarded-host', fwdHost);
  for (const name in incoming) {
    const value = incoming[name];
    if (value === undefined) continue;
    const why = drop.get(name);
    if (why === ALWAYS || (why === UNTRUSTED && !input.peerTrusted) || listed?.has(name)) continue;
    // X-Forwarded-* are rebuilt above (kept from a trusted proxy only); x-certbound-* are certbound's.
    if (name.startsWith('x-forwarded-') || name.startsWith(OWN_PREFIX)) continue;
    if (name.includes('_') && protectedAlias(name, drop)) continue;
    if (typeof value === 'string') out.push(name, value);
    // Only set-cookie arrives as a list: one line per value, as it came.
    else for (const v of value) out.push(name, v);
  }
  return out;
}

const firstValue = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);

/**
 * The headers of an upstream's `101 Switching Protocols` as the client receives them: hop-by-hop
 * and Connection-listed ones removed, as on the HTTP path, then `Connection: Upgrade` and the
 * upstream's `Upgrade` (the two a 101 needs), and the request's interaction id.
 */
export function switchingProtocolsHeaders(upstream: Record<string, string | string[] | undefined>, interactionId?: string | string[]): Record<string, string | string[]> {
  const out = clientResponseHeaders(upstream);
  out.connection = 'Upgrade';
  if (upstream.upgrade !== undefined) out.upgrade = upstream.upgrade;
  if (interactionId !== undefined) out['x-fapi-interaction-id'] = interactionId;
  return out;
}

/**
 * An upstream's refusal of an upgrade (any status but 101) as the tunnel relays it: its body
 * arrives de-chunked and the connection ends after it, so hop-by-hop headers (Transfer-Encoding
 * among them) go and `Connection: close` frames the body.
 */
export function refusedUpgradeHeaders(upstream: Record<string, string | string[] | undefined>, interactionId: string | string[] | undefined): Record<string, string | string[]> {
  const out = clientResponseHeaders(upstream);
  out.connection = 'close';
  if (interactionId !== undefined) out['x-fapi-interaction-id'] = interactionId;
  return out;
}

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
