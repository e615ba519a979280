import type { IncomingMessage } from 'node:http';
import { isDeepStrictEqual } from 'node:util';
import type { TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import type { Config, RouteConfig } from './config/types.js';
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
  /**
   * The certificate's thumbprint for the access log of a refused request: never throws, never
   * warns. The connection is passed in: once undici has sent a request body, `req.socket` is null.
   */
  readonly thumbprintOf: (req: IncomingMessage, socket: Socket) => string | undefined;
  readonly peerTrusted: (peer: string | undefined) => boolean;
  /** Headers no client may set: they are stripped before anything is forwarded. */
  readonly protectedHeaders: ReadonlySet<string>;
  /** Per route, what is never forwarded: the protected headers, plus Authorization unless the route keeps it. */
  readonly strippedHeaders: ReadonlyMap<RouteConfig, ReadonlySet<string>>;
  readonly tokens: TokenValidator | undefined;
  readonly upstreams: ReadonlyMap<string, Upstream>;
  ready(): boolean;
  close(): Promise<void>;
}

/** Gateways sharing one token validator: it closes with the last of them. */
const validatorUsers = new WeakMap<TokenValidator, number>();

/** A reload that leaves token validation as it was keeps the validator, its cache and its keys. */
function sameValidation(a: Config, b: Config): boolean {
  return a.tokenValidation === b.tokenValidation && isDeepStrictEqual(a.authorizationServer, b.authorizationServer);
}

export function compileGateway(config: Config, deps: { metrics?: Metrics; log?: Logger; clock?: () => number; previous?: Gateway } = {}): Gateway {
  const cc = config.clientCertificate;
  const peerTrusted = createProxyTrust(cc.trustedProxies);
  const protectedHeaders = new Set<string>(Object.values(config.identityHeaders));
  for (const r of config.routes) if (r.forwardCertificateHeader) protectedHeaders.add(r.forwardCertificateHeader);

  let readCertificate: Gateway['readCertificate'];
  let peek: (req: IncomingMessage, socket: Socket) => CertificateResult;
  if (cc.source === 'header') {
    const reader = createHeaderCertificateReader(cc, deps.clock, peerTrusted);
    for (const name of reader.headerNames) protectedHeaders.add(name);
    peek = (req, socket) => reader.read(req.headersDistinct, socket.remoteAddress, socket);
    readCertificate = (req) => {
      const result = peek(req, req.socket);
      if (!result.present && result.untrustedPeer) {
        deps.log?.warn({ msg: 'certificate header from an untrusted peer ignored', peer: req.socket.remoteAddress, header: cc.header });
      }
      return result;
    };
  } else {
    // The header a proxy would use is still stripped: a TLS client must not smuggle one upstream.
    protectedHeaders.add(cc.header);
    const options = { requireVerified: config.listen.tls?.clientCa !== undefined, checkValidity: cc.verify.checkValidity, now: deps.clock ?? Date.now };
    peek = (_req, socket) =>
      'getPeerX509Certificate' in socket ? certificateFromSocket(socket as TLSSocket, options) : { present: false, why: 'connection is not TLS' };
    readCertificate = (req) => peek(req, req.socket);
  }
  const thumbprintOf = (req: IncomingMessage, socket: Socket): string | undefined => {
    try {
      const result = peek(req, socket);
      return result.present ? result.certificate.thumbprint : undefined;
    } catch {
      return undefined;
    }
  };

  const reused = deps.previous?.tokens && sameValidation(deps.previous.config, config) ? deps.previous.tokens : undefined;
  const tokens = reused ?? (config.authorizationServer
    ? createTokenValidator(config.authorizationServer, config.tokenValidation, {
        ...(deps.metrics ? { metrics: deps.metrics } : {}),
        ...(deps.log ? { logger: deps.log } : {}),
        ...(deps.clock ? { clock: deps.clock } : {}),
      })
    : undefined);
  if (tokens) validatorUsers.set(tokens, (validatorUsers.get(tokens) ?? 0) + 1);
  const upstreams = new Map([...config.upstreams.values()].map((u) => [u.name, createUpstream(u)]));
  const withAuthorization = new Set([...protectedHeaders, 'authorization']);
  const strippedHeaders = new Map(config.routes.map((r) => [r, r.forwardAuthorization ? protectedHeaders : withAuthorization]));

  return Object.freeze({
    config,
    route: createRouter(config.routes),
    readCertificate,
    thumbprintOf,
    peerTrusted,
    protectedHeaders,
    strippedHeaders,
    tokens,
    upstreams,
    ready: () => tokens?.ready() ?? true,
    async close() {
      let closeTokens: Promise<void> | undefined;
      if (tokens) {
        const users = (validatorUsers.get(tokens) ?? 1) - 1;
        validatorUsers.set(tokens, users);
        if (users === 0) closeTokens = tokens.close();
      }
      await Promise.allSettled([closeTokens, ...[...upstreams.values()].map((u) => u.close())]);
    },
  });
}
