import type { JWTVerifyGetKey } from 'jose';
import type { Dispatcher } from 'undici';
import type { AuthorizationServerConfig } from '../config/types.js';
import { GatewayError, isGatewayError } from '../errors.js';
import type { Metrics } from '../observability/metrics.js';
import { checkTimes, claimsOf, unavailable, type Outcome } from './claims.js';
import type { ClientAuthentication } from './client-auth.js';
import { HttpFailure, send } from './http.js';
import { verifySignedJwt } from './jwt.js';

/** Where the introspection client reports what the client must not see (pino's `warn` fits). */
export interface WarningLogger {
  warn(details: Record<string, unknown>, message: string): void;
}

export type IntrospectionResult = 'active' | 'inactive' | 'error' | 'timeout' | 'overloaded';

type Claims = ReturnType<typeof claimsOf>;
type Answer = { readonly active: false } | { readonly active: true; readonly answer: Record<string, unknown>; readonly claims: Claims };

const SIGNED_RESPONSE = 'application/token-introspection+jwt';

/** Why an answer was unusable, for the log; the client only ever sees `as_unavailable`. */
class UnusableAnswer extends Error {
  override readonly name = 'UnusableAnswer';
}

/**
 * RFC 7662 introspection (optionally RFC 9701 signed responses) with a bounded number of calls in
 * flight: beyond `maxConcurrentRequests` it fails fast rather than queue.
 */
export function createIntrospection(opts: {
  config: AuthorizationServerConfig;
  endpoint: string;
  /** certbound's client id: the audience of a signed answer. */
  clientId: string;
  dispatcher: Dispatcher;
  authenticate: () => Promise<ClientAuthentication>;
  /** Set when signed introspection is on: the authorization server's keys. */
  getKey?: JWTVerifyGetKey;
  clock: () => number;
  metrics?: Metrics;
  logger?: WarningLogger;
}): (token: string) => Promise<Outcome> {
  const { config, metrics, logger } = opts;
  let inFlight = 0;

  const record = (result: IntrospectionResult, startedMs: number) => {
    metrics?.introspections.inc({ result });
    if (result !== 'overloaded') metrics?.introspectionDuration.observe({ result }, (performance.now() - startedMs) / 1000);
  };

  const call = async (token: string): Promise<Answer> => {
    const auth = await opts.authenticate();
    const res = await send(opts.dispatcher, opts.endpoint, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        accept: opts.getKey ? SIGNED_RESPONSE : 'application/json',
        ...auth.headers,
      },
      body: new URLSearchParams({ token, token_type_hint: 'access_token', ...auth.params }).toString(),
      signal: AbortSignal.timeout(config.timeoutMs),
    });
    if (res.status < 200 || res.status > 299) throw new UnusableAnswer(`introspection endpoint answered ${res.status}`);
    const body = res.body.toString('utf8');
    const answer = opts.getKey ? await signedAnswer(body, res.mediaType, opts.getKey) : parseJson(body);
    if (typeof answer['active'] !== 'boolean') throw new UnusableAnswer('introspection response has no boolean "active"');
    if (!answer['active']) return { active: false };
    return { active: true, answer, claims: claimsOf(answer, (member) => new UnusableAnswer(`introspection response has a malformed "${member}"`)) };
  };

  const signedAnswer = async (body: string, mediaType: string, getKey: JWTVerifyGetKey) => {
    if (mediaType !== SIGNED_RESPONSE) throw new UnusableAnswer(`expected ${SIGNED_RESPONSE}, got "${mediaType}"`);
    const payload = await verifySignedJwt(body, getKey, {
      typ: 'token-introspection+jwt',
      issuer: config.issuer,
      audience: opts.clientId,
      algorithms: config.allowedAlgorithms,
      clockSkewSeconds: config.clockSkewSeconds,
      clock: opts.clock,
    }).catch((err: unknown) => {
      if (isGatewayError(err) && err.code === 'as_unavailable') throw err;
      throw new UnusableAnswer('signed introspection response failed verification');
    });
    const nested = payload['token_introspection'];
    if (typeof nested !== 'object' || nested === null || Array.isArray(nested)) {
      throw new UnusableAnswer('signed introspection response has no "token_introspection" object');
    }
    return nested as Record<string, unknown>;
  };

  return async (token) => {
    if (inFlight >= config.maxConcurrentRequests) {
      record('overloaded', 0);
      throw unavailable(config.retryAfterSeconds);
    }
    inFlight++;
    const started = performance.now();
    let answer: Answer;
    try {
      answer = await call(token);
    } catch (err) {
      const timedOut = err instanceof HttpFailure && err.kind === 'timeout';
      record(timedOut ? 'timeout' : 'error', started);
      logger?.warn({ endpoint: opts.endpoint, reason: err instanceof Error ? err.message : String(err) }, 'token introspection failed');
      throw unavailable(config.retryAfterSeconds);
    } finally {
      inFlight--;
    }
    if (!answer.active) {
      record('inactive', started);
      return { active: false };
    }
    record('active', started);
    return { active: true, claims: validClaims(answer.claims, answer.answer, config, opts.clock()) };
  };
}

function parseJson(body: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    throw new UnusableAnswer('introspection response is not JSON');
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new UnusableAnswer('introspection response is not a JSON object');
  return json as Record<string, unknown>;
}

const ACCESS_TOKEN_TYPES = new Set(['bearer', 'dpop']);

/** An active answer's claims, refused when its issuer, audience, type or times don't fit. */
function validClaims(claims: Claims, answer: Record<string, unknown>, config: AuthorizationServerConfig, nowMs: number): Claims {
  if (claims.iss !== undefined && claims.iss !== config.issuer) {
    throw new GatewayError('invalid_token', 'the access token was issued by another authorization server');
  }
  const aud = answer['aud'];
  if (config.audience !== undefined && aud !== undefined && !(Array.isArray(aud) ? aud.includes(config.audience) : aud === config.audience)) {
    throw new GatewayError('invalid_token', 'the access token is meant for another audience');
  }
  const tokenType = answer['token_type'];
  // RFC 9449 §6.2: a DPoP-bound token's type is DPoP. Some servers answer `active: true` for a
  // refresh token, without a token_type.
  if (typeof tokenType === 'string' ? !ACCESS_TOKEN_TYPES.has(tokenType.toLowerCase()) : config.requireTokenType) {
    throw new GatewayError('invalid_token', 'the token is not a bearer or DPoP access token');
  }
  checkTimes(claims, nowMs, config.clockSkewSeconds);
  return claims;
}
