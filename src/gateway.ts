import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Config } from './config/types.js';
import { createRouter, type Router } from './route.js';
import { certificateFromSocket } from './certificate/tls.js';
import { createHeaderCertificateReader } from './certificate/header.js';
import type { CertificateResult } from './certificate/types.js';
import { createProxyTrust } from './certificate/trust.js';
import { createTokenValidator } from './token/index.js';
import type { TokenValidator } from './token/types.js';
import { createUpstream, type Upstream } from './forward/upstream.js';
import type { Metrics } from './observability/metrics.js';
import type { Logger } from './observability/logger.js';

/**
 * gateway.yaml compiled into what the request path needs. Built whole at start and on every
 * reload, then swapped in one assignment; in-flight requests finish on the one they started with.
 */
export interface Gateway {
  readonly config: Config;
  readonly route: Router;
  readonly readCertificate: (req: IncomingMessage) => CertificateResult;
  readonly peerTrusted: (peer: string | undefined) => boolean;
  /** Headers no client may set: they are stripped before anything is forwarded. */
  readonly protectedHeaders: ReadonlySet<string>;
  readonly tokens: TokenValidator | undefined;
  readonly upstreams: ReadonlyMap<string, Upstream>;
  ready(): boolean;
  close(): Promise<void>;
}

export function compileGateway(config: Config, deps: { metrics?: Metrics; log?: Logger; clock?: () => number } = {}): Gateway {
  const cc = config.clientCertificate;
  const peerTrusted = createProxyTrust(cc.trustedProxies);
  const protectedHeaders = new Set<string>(Object.values(config.identityHeaders));
  for (const r of config.routes) if (r.forwardCertificateHeader) protectedHeaders.add(r.forwardCertificateHeader);

  let readCertificate: Gateway['readCertificate'];
  if (cc.source === 'header') {
    const reader = createHeaderCertificateReader(cc, deps.clock);
    for (const name of reader.headerNames) protectedHeaders.add(name);
    readCertificate = (req) => {
      const result = reader.read(req.headersDistinct, req.socket.remoteAddress);
      if (!result.present && result.untrustedPeer) {
        deps.log?.warn({ msg: 'certificate header from an untrusted peer ignored', peer: req.socket.remoteAddress, header: cc.header });
      }
      return result;
    };
  } else {
    // The header a proxy would use is still stripped: a TLS client must not smuggle one upstream.
    protectedHeaders.add(cc.header);
    const requireVerified = config.listen.tls?.clientCa !== undefined;
    readCertificate = (req) =>
      'getPeerX509Certificate' in req.socket ? certificateFromSocket(req.socket as TLSSocket, requireVerified) : { present: false, why: 'connection is not TLS' };
  }

  const tokens = config.authorizationServer
    ? createTokenValidator(config.authorizationServer, config.tokenValidation, {
        ...(deps.metrics ? { metrics: deps.metrics } : {}),
        ...(deps.log ? { logger: deps.log } : {}),
        ...(deps.clock ? { clock: deps.clock } : {}),
      })
    : undefined;
  const upstreams = new Map([...config.upstreams.values()].map((u) => [u.name, createUpstream(u)]));

  return Object.freeze({
    config,
    route: createRouter(config.routes),
    readCertificate,
    peerTrusted,
    protectedHeaders,
    tokens,
    upstreams,
    ready: () => tokens?.ready() ?? true,
    async close() {
      await Promise.allSettled([tokens?.close(), ...[...upstreams.values()].map((u) => u.close())]);
    },
  });
}
