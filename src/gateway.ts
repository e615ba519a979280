import type { Socket } from 'node:net';
import { createSecureContext, type SecureContextOptions, type TLSSocket } from 'node:tls';
import { ConfigError } from './config/load.js';
import { HTTP_METHODS } from './config/schema.js';
import type { Config, IdentityHeadersConfig, RouteConfig } from './config/types.js';
import { createRouter, type Router } from './route.js';
import { certificateFromSocket } from './certificate/tls.js';
import { createHeaderCertificateReader } from './certificate/header.js';
import type { CertificateResult, ConnectionCertificates } from './certificate/types.js';
import { createProxyTrust } from './certificate/trust.js';
import { createTokenValidator } from './token/index.js';
import type { TokenValidator } from './token/types.js';
import { createDropTable, type DropTable } from './forward/headers.js';
import { createUpstream, type Upstream } from './forward/upstream.js';
import { createMetrics, type Metrics } from './observability/metrics.js';
import { NO_ROUTE, createRouteSeries, createUpstreamSeries, type RouteSeries } from './observability/record.js';
import type { Logger } from './observability/logger.js';
import { secureContextOptions } from './server/listeners.js';
import { authorizerFor, type Authorize } from './stages.js';
import { createRevocationChecker, type RevocationChecker } from './revocation/checker.js';
import { createDpopParts, type DpopParts } from './dpop/stage.js';
import { takesDpop } from './config/resolve-dpop.js';
import type { RevocationList } from './shared/revocations.js';
import type { SharedStore } from './shared/types.js';
import type { Sealer } from './shared/seal.js';
import type { FillBus } from './shared/fills.js';
import { createSharedTokenCache } from './shared/token-cache.js';
import { createSharedReplayStore } from './shared/replay-store.js';
import type { ReplayStore } from './dpop/replay.js';

/** What the certificate stage reads of a request: data, not the IncomingMessage. */
export interface RequestView {
  /** req.headersDistinct. */
  readonly headers: NodeJS.Dict<string[]>;
  /** The connection (undici sets req.socket to null once it has sent a request body). */
  readonly socket: Socket;
  /** What the certificate readers keep on this connection. */
  readonly connection: ConnectionCertificates;
  /** The request method, as received (DPoP htm is compared with it). */
  readonly method: string;
}

/** Everything a request on one route needs, built once per route when the gateway is compiled. */
export interface CompiledRoute {
  readonly name: string;
  readonly config: RouteConfig;
  readonly upstream: Upstream;
  /** Headers never forwarded on this route: the protected ones, and Authorization and DPoP unless the route keeps them. */
  readonly drop: DropTable;
  /** Names of the headers certbound tells the upstream who the caller is in. */
  readonly identity: IdentityHeadersConfig;
  readonly series: RouteSeries;
  /** Its auth stages: credentials → token validation → binding → policy, as its `auth` asks. */
  readonly authorize: Authorize;
}

/**
 * gateway.yaml compiled into what the request path needs. Built whole at start and on every
 * reload, then swapped in one assignment; in-flight requests finish on the one they started with.
 */
export interface Gateway {
  readonly config: Config;
  readonly route: Router<CompiledRoute>;
  /** Requests that matched no route are counted here. */
  readonly unrouted: RouteSeries;
  readonly readCertificate: (view: RequestView) => CertificateResult;
  /** The certificate's thumbprint for the access line of a refused request: never throws, never warns. */
  readonly thumbprintOf: (view: RequestView) => string | undefined;
  readonly peerTrusted: (peer: string | undefined) => boolean;
  readonly tokens: TokenValidator | undefined;
  readonly upstreams: ReadonlyMap<string, Upstream>;
  /** The TLS listener's context options, already accepted by OpenSSL. */
  readonly tls: SecureContextOptions | undefined;
  ready(): boolean;
  /** Why it is not ready (the JWKS, CRLs not yet tried), or undefined when it is. */
  unready(): string | undefined;
  /** Starts what serving needs in the background (the JWKS fetch, CRL downloads). `certbound validate` compiles and closes without it. */
  start(): void;
  /** Revocation (OCSP, CRL) with its status cache and CRLs, when client_certificate.revocation.mode is not off. */
  readonly revocation: RevocationChecker | undefined;
  /** DPoP proof checks, nonces and replay store, when a route takes DPoP. */
  readonly dpop: DpopParts | undefined;
  /** dpop.algorithms as the algs of a DPoP challenge. */
  readonly dpopAlgs: string;
  /** Gives up the parts it owns that `heir` uses too (it reused them: see takeOver). */
  handOver(heir: Gateway): KeptParts;
  /** Owns these parts from now on, those of them it uses. */
  adopt(parts: KeptParts): void;
  /** Closes the upstream pools and the token validator and revocation checker it still owns. Idempotent. */
  close(): Promise<void>;
}

export interface GatewayDeps {
  readonly metrics?: Metrics;
  readonly log?: Logger;
  readonly clock?: () => number;
  /** A running gateway whose token validator (cache, keys) this one may take over, when validation is the same. */
  readonly previous?: Gateway;
  /** The process's revocation list (POST /revocations), kept across reloads. */
  readonly revocations?: RevocationList;
  /** The process's shared store (shared_state.redis_url) and its sealer. */
  readonly shared?: { readonly store: SharedStore; readonly sealer: Sealer; readonly fills: FillBus };
}

/**
 * What a reload keeps when its configuration is unchanged: the token validator (its cache and
 * keys) and the revocation checker (its status cache and CRLs). Each is owned by exactly one
 * gateway at a time, which closes it.
 */
export interface KeptParts {
  readonly tokens?: TokenValidator;
  readonly revocation?: RevocationChecker;
}

/** File contents serialize as their bytes; parsed certificates and keys, which have no own members, as {}. */
const canonical = (config: Config): string => JSON.stringify(config.authorizationServer ?? null);
const canonicalRevocation = (config: Config): string => JSON.stringify(config.clientCertificate.revocation);

/** What TLS itself refuses (a cipher list OpenSSL does not know, a key it cannot use), as a config problem. */
function tlsOf(config: Config): SecureContextOptions | undefined {
  if (!config.listen.tls) return undefined;
  const options = secureContextOptions(config.listen.tls);
  try {
    createSecureContext(options);
  } catch (error) {
    throw new ConfigError([`listen.tls: ${(error as Error).message}`]);
  }
  return options;
}

function certificateReading(config: Config, deps: GatewayDeps, peerTrusted: (peer: string | undefined) => boolean, protect: (name: string) => void) {
  const cc = config.clientCertificate;
  let peek: (view: RequestView) => CertificateResult;
  let read: (view: RequestView) => CertificateResult;
  if (cc.source === 'header') {
    const reader = createHeaderCertificateReader(cc, deps.clock, peerTrusted);
    reader.headerNames.forEach(protect);
    peek = (view) => reader.read(view.headers, view.socket.remoteAddress, view.connection);
    read = (view) => {
      const result = peek(view);
      if (!result.present && result.untrustedPeer) {
        deps.log?.warn({ msg: 'certificate header from an untrusted peer ignored', peer: view.socket.remoteAddress, header: cc.header });
      }
      return result;
    };
  } else {
    // The header a proxy would use is still stripped: a TLS client must not smuggle one upstream.
    protect(cc.header);
    const options = { requireVerified: config.listen.tls?.clientCa !== undefined, checkValidity: cc.verify.checkValidity, now: deps.clock ?? Date.now };
    peek = (view) =>
      'getPeerX509Certificate' in view.socket ? certificateFromSocket(view.socket as TLSSocket, view.connection, options) : { present: false, why: 'connection is not TLS' };
    read = peek;
  }
  const thumbprintOf = (view: RequestView): string | undefined => {
    try {
      const result = peek(view);
      return result.present ? result.certificate.thumbprint : undefined;
    } catch {
      return undefined;
    }
  };
  return { read, thumbprintOf };
}

/**
 * Builds everything the request path reads from a Config. `certbound validate` calls this too (and
 * closes the result), so whatever fails at start fails there, with a key path.
 */
export function compileGateway(config: Config, deps: GatewayDeps = {}): Gateway {
  const tls = tlsOf(config);
  const metrics = deps.metrics ?? createMetrics({ defaultMetrics: false });
  const peerTrusted = createProxyTrust(config.clientCertificate.trustedProxies);
  const protectedHeaders = new Set<string>(Object.values(config.identityHeaders));
  for (const r of config.routes) if (r.forwardCertificateHeader) protectedHeaders.add(r.forwardCertificateHeader);
  const certificates = certificateReading(config, deps, peerTrusted, (name) => protectedHeaders.add(name));

  const previous = deps.previous;
  const reused = previous?.tokens && canonical(previous.config) === canonical(config) ? previous.tokens : undefined;
  // A reused validator stays the previous gateway's until the swap hands it over (a reload may be abandoned).
  let ownedTokens: TokenValidator | undefined = reused === undefined && config.authorizationServer
    ? createTokenValidator(config.authorizationServer, {
        metrics,
        ...(deps.log ? { logger: deps.log } : {}),
        ...(deps.clock ? { clock: deps.clock } : {}),
        ...(deps.revocations ? { revocations: deps.revocations } : {}),
        ...(deps.shared
          ? {
              shared: createSharedTokenCache({
                ...deps.shared,
                maxTtlSeconds: config.authorizationServer.cache.maxTtlSeconds,
                clockSkewSeconds: config.authorizationServer.clockSkewSeconds,
                introspectionTimeoutMs: config.authorizationServer.timeoutMs,
                clock: deps.clock ?? Date.now,
                metrics,
              }),
            }
          : {}),
      })
    : undefined;
  const tokens = reused ?? ownedTokens;

  const revocationConfig = config.clientCertificate.revocation;
  const keptRevocation = previous?.revocation && canonicalRevocation(previous.config) === canonicalRevocation(config) ? previous.revocation : undefined;
  let ownedRevocation = keptRevocation === undefined && revocationConfig.mode !== 'off'
    ? createRevocationChecker(revocationConfig, { metrics, ...(deps.log ? { log: deps.log } : {}), ...(deps.clock ? { clock: deps.clock } : {}) })
    : undefined;
  const revocation = keptRevocation ?? ownedRevocation;

  const sharedStore = deps.shared?.store;
  // A proof seen before a reload is a replay after it: the store is kept while its size is.
  const dpop = config.routes.some((r) => takesDpop(r.auth))
    ? createDpopParts(config.dpop, {
        clock: deps.clock ?? Date.now,
        evicted: () => metrics.dpopReplayEvictions.inc(),
        ...(sharedStore ? { share: (local: ReplayStore) => createSharedReplayStore(sharedStore, local, deps.clock ?? Date.now) } : {}),
        ...(previous?.dpop && previous.config.dpop.replayCacheEntries === config.dpop.replayCacheEntries ? { replay: previous.dpop.replay } : {}),
      })
    : undefined;

  const upstreams = new Map([...config.upstreams.values()].map((u) => [u.name, createUpstream(u, createUpstreamSeries(metrics, u.name))]));
  const dropTables = new Map<string, DropTable>();
  // Authorization and DPoP are the client's credentials: kept only where the route says so, and
  // DPoP always at a token endpoint (mtls), where the server binds the token it issues.
  const dropFor = (r: RouteConfig): DropTable => {
    const strip = [...protectedHeaders, ...(r.forwardAuthorization ? [] : ['authorization']), ...(r.forwardAuthorization || r.auth === 'mtls' ? [] : ['dpop'])];
    const key = strip.slice(protectedHeaders.size).join(' ');
    let table = dropTables.get(key);
    if (table === undefined) dropTables.set(key, (table = createDropTable(strip)));
    return table;
  };
  const routes: CompiledRoute[] = config.routes.map((r) => ({
    name: r.name,
    config: r,
    // The config step checked that every route's upstream exists.
    upstream: upstreams.get(r.upstream) as Upstream,
    drop: dropFor(r),
    identity: config.identityHeaders,
    series: createRouteSeries(metrics, r.name, HTTP_METHODS),
    authorize: authorizerFor(r, { readCertificate: certificates.read, tokens, revocation, dpop }),
  }));

  const unready = (): string | undefined => {
    if (tokens && !tokens.ready()) return 'token validation keys (JWKS) not loaded';
    if (revocation && !revocation.ready()) return 'CRLs not loaded yet';
    return undefined;
  };
  let closing: Promise<void> | undefined;
  return Object.freeze({
    config,
    route: createRouter(routes),
    unrouted: createRouteSeries(metrics, NO_ROUTE, HTTP_METHODS),
    readCertificate: certificates.read,
    thumbprintOf: certificates.thumbprintOf,
    peerTrusted,
    tokens,
    upstreams,
    tls,
    ready: () => unready() === undefined,
    unready,
    start: () => {
      tokens?.start();
      // A kept checker is running already.
      if (keptRevocation === undefined) revocation?.start();
    },
    revocation,
    dpop,
    dpopAlgs: config.dpop.algorithms.join(' '),
    handOver(heir: Gateway): KeptParts {
      const tokensHanded = ownedTokens !== undefined && heir.tokens === ownedTokens ? ownedTokens : undefined;
      const revocationHanded = ownedRevocation !== undefined && heir.revocation === ownedRevocation ? ownedRevocation : undefined;
      if (tokensHanded) ownedTokens = undefined;
      if (revocationHanded) ownedRevocation = undefined;
      return { ...(tokensHanded ? { tokens: tokensHanded } : {}), ...(revocationHanded ? { revocation: revocationHanded } : {}) };
    },
    adopt(parts: KeptParts) {
      if (parts.tokens !== undefined && parts.tokens === tokens) ownedTokens = parts.tokens;
      if (parts.revocation !== undefined && parts.revocation === revocation) ownedRevocation = parts.revocation;
    },
    close() {
      ownedRevocation?.close();
      closing ??= Promise.allSettled([ownedTokens?.close(), ...[...upstreams.values()].map((u) => u.close())]).then(() => undefined);
      return closing;
    },
  });
}

/**
 * At the swap: `next` takes over the parts of `previous` it reused (token validator, revocation
 * checker), so closing `previous` (once its last request is done) leaves them open. One owner at
 * any time, no count.
 */
export function takeOver(next: Gateway, previous: Gateway): void {
  next.adopt(previous.handOver(next));
}
