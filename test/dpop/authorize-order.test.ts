// dpop_bound_token's order of work on plain values: when the proof's first use is claimed against
// the token lookup. A token to look up: claimed while it is looked up (the two Redis waits
// overlap, issue 14's 2 × timeout_ms bound), the verdict still after the key binding. A cached
// token: claimed only once the binding holds.
import t from 'tap';
import type { RouteConfig } from '../../src/config/types.js';
import type { RequestView } from '../../src/gateway.js';
import { authorizerFor } from '../../src/authorize.js';
import { createDpopParts } from '../../src/dpop/stage.js';
import type { ReplayStore } from '../../src/dpop/replay.js';
import { parseTarget } from '../../src/route.js';
import { claimsOf } from '../../src/token/claims.js';
import type { TokenClaims, TokenValidator } from '../../src/token/types.js';
import { GatewayError } from '../../src/errors.js';
import { codeOf } from '../helpers/codes.js';
import { proof, proofKey, type ProofKey } from './fixtures.js';

const NOW_S = 1_700_000_000;
const ORIGIN = 'https://api.example.com';
const TOKEN = 'token-1';
const key = proofKey('ES256');
const other = proofKey('ES256');
const route: RouteConfig = {
  name: 'r', pathPrefix: '/', methods: ['GET'], upstream: 'u', auth: 'dpop_bound_token', scopes: ['accounts'],
  forwardAuthorization: false, allowDoubleEncoding: false, psd2Roles: [], publicOrigin: ORIGIN,
};
const target = parseTarget('/accounts');
const boundTo = (k: ProofKey): TokenClaims => claimsOf({ scope: 'accounts', cnf: { jkt: k.jkt } }, (m) => new Error(m));

async function rejectionOf(result: unknown): Promise<string> {
  try {
    await result;
  } catch (e) {
    if (e instanceof GatewayError) return e.code;
    throw e;
  }
  return 'no error';
}

/** A replay store whose answers the test gives, recording when it was asked; a validator whose lookups the test settles. */
function setup(opts: { cached?: TokenClaims; firstUse?: boolean } = {}) {
  const events: string[] = [];
  let settle: (claims: TokenClaims) => void = () => undefined;
  const replay: ReplayStore = {
    firstUse: () => {
      events.push('claim');
      return Promise.resolve(opts.firstUse ?? true);
    },
    size: 0,
  };
  const tokens: TokenValidator = {
    cached: () => opts.cached,
    validate: () => {
      events.push('lookup');
      return new Promise<TokenClaims>((resolve) => (settle = resolve));
    },
    ready: () => true,
    start: () => undefined,
    close: async () => undefined,
  };
  const dpop = createDpopParts(
    { algorithms: ['ES256'], iatLeewaySeconds: 60, nonce: 'off', nonceLifetimeSeconds: 300, replayCacheEntries: 10, nonceSecret: Buffer.alloc(32) },
    { clock: () => NOW_S * 1000, replay },
  );
  const authorize = authorizerFor(route, { readCertificate: () => ({ present: false }), tokens, dpop });
  const view = (): RequestView => ({
    headers: { authorization: [`DPoP ${TOKEN}`], dpop: [proof(key, 'GET', `${ORIGIN}/accounts`, TOKEN, { nowSeconds: NOW_S })] },
    socket: {} as RequestView['socket'],
    connection: {},
    method: 'GET',
  });
  return { events, settle: (claims: TokenClaims) => settle(claims), run: () => authorize(view(), target) };
}

t.test('a token to look up: the first use is claimed while it is looked up', async (t) => {
  const s = setup();
  const result = s.run();
  t.same(s.events, ['claim', 'lookup'], 'both asked before either answered');
  s.settle(boundTo(key));
  t.match(await result, { jkt: key.jkt });
});

t.test('a token to look up, bound to another key, with a replayed proof: the binding is the verdict', async (t) => {
  const s = setup({ firstUse: false });
  const result = s.run();
  s.settle(boundTo(other));
  t.equal(await rejectionOf(result), 'dpop_key_mismatch');
});

t.test('a token to look up with a replayed proof: dpop_replay once the binding holds', async (t) => {
  const s = setup({ firstUse: false });
  const result = s.run();
  s.settle(boundTo(key));
  t.equal(await rejectionOf(result), 'dpop_replay');
});

t.test('a cached token: no lookup, and the first use claimed only once the binding holds', async (t) => {
  const mismatch = setup({ cached: boundTo(other) });
  t.equal(codeOf(() => mismatch.run()), 'dpop_key_mismatch');
  t.same(mismatch.events, [], 'a token bound to another key does not use up the proof');
  const bound = setup({ cached: boundTo(key) });
  t.match(await bound.run(), { jkt: key.jkt });
  t.same(bound.events, ['claim']);
});
