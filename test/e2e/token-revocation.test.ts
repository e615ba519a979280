// docs/operations.md's hook, for real: oidc-provider's access_token.destroyed (client_credentials.destroyed) and grant.revoked
// events call certbound's POST /revocations, so a token the TPP revokes at the server is refused
// by certbound at once, though its cache would have kept it for max_ttl_seconds.
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ACCOUNTS, startTopology } from './fixtures/topology.js';

const dir = mkdtempSync(join(tmpdir(), 'certbound-hook-'));
const SECRET = 'admin-secret-for-the-hook-0123456789abcdef';
writeFileSync(join(dir, 'admin-secret'), SECRET);
const top = await startTopology({ admin: { revocation_secret_file: join(dir, 'admin-secret') }, cache: { max_ttl_seconds: 300 } });
t.teardown(() => top.close());
const { clients, backends, gw } = top;

// The hook, as docs/operations.md shows it.
const admin = `${gw.adminUrl}/revocations`;
const delivered: number[] = [];
const revoke = (body: unknown) =>
  fetch(admin, { method: 'POST', headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(2000) })
    .then((res) => void delivered.push(res.status))
    .catch(() => undefined);
const now = () => Math.floor(Date.now() / 1000);
const provider = backends.as.provider as unknown as { on(event: string, listener: (...args: never[]) => void): void };
// Access tokens of the authorization code flow, and client_credentials tokens: two kinds there.
for (const event of ['access_token.destroyed', 'client_credentials.destroyed']) provider.on(event, (token: { jti: string }) => void revoke({ token: token.jti }));
provider.on('grant.revoked', (ctx: { oidc: { client?: { clientId: string } } }) => void (ctx.oidc.client && revoke({ client_id: ctx.oidc.client.clientId, issued_before: now() })));

const tokenOf = async (): Promise<string> => {
  const res = await top.token(clients.a, { grant_type: 'client_credentials', client_id: 'tpp-a', scope: 'accounts' });
  t.equal(res.status, 200);
  return res.json()['access_token'] as string;
};

t.test('a token revoked at the authorization server is refused by certbound at once', async (t) => {
  const token = await tokenOf();
  t.equal((await top.api(clients.a, ACCOUNTS, { token })).status, 200, 'valid, and now cached by certbound');
  const revoked = await top.token(clients.a, { client_id: 'tpp-a', token, token_type_hint: 'access_token' }, { path: '/token/revocation' });
  t.equal(revoked.status, 200, 'RFC 7009 revocation through the token filter');
  const started = Date.now();
  let status = 200;
  while (status === 200 && Date.now() - started < 2000) {
    status = (await top.api(clients.a, ACCOUNTS, { token })).status;
    if (status === 200) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  t.equal(status, 401, `refused ${Date.now() - started} ms after the revocation`);
  t.ok(delivered.includes(202), 'the hook was answered 202');
  const line = gw.logs.filter((l) => l['msg'] === 'request').at(-1);
  t.equal(line?.['reason'], 'token_revoked', 'refused as revoked, from the list, not re-introspected');
  const other = await tokenOf();
  t.equal((await top.api(clients.a, ACCOUNTS, { token: other })).status, 200, "the client's other tokens still work");
});
