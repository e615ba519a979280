// npm run demo [-- --once]
//
// A throw-away PKI, a real authorization server (oidc-provider), a sample open-banking API and
// certbound itself, configured by the repository's gateway.yaml, all on 127.0.0.1 and all in
// this one process (Ctrl-C stops everything). Then a narrated walkthrough, each step checked.
// See docs/demo.md.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { generateKeyPair, generateProof, type KeyPair } from 'dpop';
import { calculateJwkThumbprint, exportJWK } from 'jose';
import { ConfigError, loadConfig } from '../src/config/load.js';
import type { DemoPki } from '../test/fixtures/pki.js';
import { DPOP_CLIENT_IDS } from '../test/fixtures/authorization-server.js';
import { createLogging } from '../src/observability/logger.js';
import { createMetrics } from '../src/observability/metrics.js';
import { startRuntime, type Runtime } from '../src/server/runtime.js';
import { call, tlsClient, type Reply } from '../test/helpers/client.js';
import { gatewayEnv, generatePki, GATEWAY_YAML, startBackends, type Backends } from './stack.js';

const USAGE = `Usage: npm run demo [-- --once]

  --once   exit after the walkthrough: 0 when every step matched, 1 otherwise

Ports (0 picks a free one): CERTBOUND_PORT (8443), CERTBOUND_ADMIN_PORT (9091),
CERTBOUND_AS_PORT (9000), CERTBOUND_BANK_PORT (9001).`;

const ACCOUNTS = '/open-banking/v3.1/aisp/accounts';
const PAYMENT_CONSENTS = '/open-banking/v3.1/pisp/domestic-payment-consents';
/** Served by gateway.yaml's accounts-dpop route (auth: sender_constrained_token). */
const SAVINGS_BALANCES = '/open-banking/v3.1/aisp/accounts/31820/balances';
const PAYMENT = JSON.stringify({
  Data: {
    Initiation: {
      InstructionIdentification: 'demo-1',
      EndToEndIdentification: 'demo-1',
      InstructedAmount: { Amount: '10.00', Currency: 'GBP' },
      CreditorAccount: { SchemeName: 'UK.OBIE.SortCodeAccountNumber', Identification: '08080021325698', Name: 'ACME Inc' },
    },
  },
  Risk: {},
});

const useColour = process.stdout.isTTY && !process.env.NO_COLOR;
const paint = (code: number) => (text: string) => (useColour ? `\x1b[${code}m${text}\x1b[0m` : text);
const bold = paint(1);
const dim = paint(2);
const green = paint(32);
const red = paint(31);
const say = (line = ''): void => void process.stdout.write(`${line}\n`);

function portFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`${name}: "${raw}" is not a port number`);
  return port;
}

/** Short, recognisable form of a secret value for the narration: never the whole token. */
const abbreviated = (value: string): string => `${value.slice(0, 6)}…(${value.length} chars)`;

interface Expectation {
  readonly status: number;
  /** The OAuth `error` of the JSON body, when the step expects one. */
  readonly error?: string;
}

interface Step {
  readonly title: string;
  /** What is sent, for the narration. */
  readonly request: string;
  readonly expected: Expectation;
  run(): Promise<Reply>;
  /** A further check on a matching answer, and what to print about it. */
  inspect?(reply: Reply): { ok: boolean; note: string };
}

interface Demo {
  readonly pki: DemoPki;
  readonly backends: Backends;
  readonly runtime: Runtime;
  readonly url: string;
  readonly adminUrl: string;
  readonly logFile: string;
  /** listen.public_url: the origin DPoP proofs name (htu), whatever address the client connects to. */
  readonly publicUrl: string;
}

async function start(dir: string): Promise<Demo> {
  const pki = await generatePki(dir);
  const backends = await startBackends(pki, { asPort: portFromEnv('CERTBOUND_AS_PORT', 9000), bankPort: portFromEnv('CERTBOUND_BANK_PORT', 9001) });
  try {
    const env = { ...process.env, ...gatewayEnv(pki, backends, { traffic: portFromEnv('CERTBOUND_PORT', 8443), admin: portFromEnv('CERTBOUND_ADMIN_PORT', 9091) }) };
    // The real gateway: the repository's gateway.yaml, loaded and started as `certbound serve` does.
    const config = loadConfig(GATEWAY_YAML, env);
    const logFile = join(dir, 'gateway.log');
    const { log, access } = createLogging(config.logging.level, pino.destination({ dest: logFile, sync: true }));
    const runtime = await startRuntime(config, { log, access, metrics: createMetrics(), env });
    if (config.listen.publicUrl === undefined) throw new Error('gateway.yaml: listen.public_url is not set (the DPoP steps need it)');
    return {
      publicUrl: new URL(config.listen.publicUrl).origin,
      pki,
      backends,
      runtime,
      url: `https://127.0.0.1:${runtime.trafficAddress.port}`,
      adminUrl: `http://127.0.0.1:${runtime.adminAddress.port}`,
      logFile,
    };
  } catch (error) {
    await backends.close();
    throw error;
  }
}

async function walkthrough(demo: Demo): Promise<boolean> {
  const { pki, url } = demo;
  const asA = tlsClient(pki.ca.certPem, pki.tppA);
  const asB = tlsClient(pki.ca.certPem, pki.tppB);
  const anonymous = tlsClient(pki.ca.certPem);
  const secrets = new Set<string>([demo.backends.clientSecret]);
  const tokens: { full?: string; accountsOnly?: string } = {};
  const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
  const tokenCall = (dispatcher: typeof asA, fields: Record<string, string>) =>
    call(`${url}/token`, { dispatcher, method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form(fields) });
  const api = (dispatcher: typeof asA, path: string, token: string | undefined, body?: string) =>
    call(`${url}${path}`, {
      dispatcher,
      method: body === undefined ? 'GET' : 'POST',
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}), 'x-fapi-interaction-id': crypto.randomUUID() },
      ...(body !== undefined ? { body } : {}),
    });
  const keepToken = (slot: keyof typeof tokens) => (reply: Reply) => {
    const value = reply.json().access_token;
    if (typeof value !== 'string') return { ok: false, note: 'no access_token in the answer' };
    tokens[slot] = value;
    secrets.add(value);
    return { ok: true, note: `access_token ${abbreviated(value)}, scope "${String(reply.json().scope)}"` };
  };
  const asSeen = () => demo.backends.as.requests.length;
  let asSeenBefore = 0;

  // DPoP (RFC 9449): TPP A's DPoP client holds a key pair made for this run; the thief has its own.
  const [dpopKey, thiefKey] = await Promise.all([generateKeyPair('ES256'), generateKeyPair('ES256')]);
  const dpopJkt = await calculateJwkThumbprint(await exportJWK(dpopKey.publicKey));
  const dpop: { token?: string; tokenProof?: string } = {};
  const remember = (value: string): string => {
    secrets.add(value);
    return value;
  };
  const dpopTokenCall = async () => {
    // The token endpoint's URL as the authorization server sees it behind certbound (X-Forwarded-Host).
    dpop.tokenProof = remember(await generateProof(dpopKey, `${url}/token`, 'POST'));
    return call(`${url}/token`, {
      dispatcher: asA,
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: dpop.tokenProof },
      body: form(dpopForm),
    });
  };
  const dpopApi = async (key: KeyPair) => {
    const token = dpop.token ?? '';
    // htu: the public URL (listen.public_url) and the path; ath: the token's hash.
    const proof = remember(await generateProof(key, `${demo.publicUrl}${SAVINGS_BALANCES}`, 'GET', undefined, token));
    return call(`${url}${SAVINGS_BALANCES}`, {
      dispatcher: anonymous,
      headers: { authorization: `DPoP ${token}`, dpop: proof, 'x-fapi-interaction-id': crypto.randomUUID() },
    });
  };
  const bankSeen = () => demo.backends.bank.requests.at(-1);

  const ccForm = (scope: string) => ({ grant_type: 'client_credentials', client_id: 'tpp-a', scope });
  const dpopForm = { grant_type: 'client_credentials', client_id: DPOP_CLIENT_IDS.a, scope: 'accounts' };
  const steps: Step[] = [
    {
      title: "TPP A gets a token through certbound's /token route (client_credentials, tls_client_auth)",
      request: `POST ${url}/token   [TLS certificate: TPP A]\n      ${form(ccForm('accounts payments'))}`,
      expected: { status: 200 },
      run: () => tokenCall(asA, ccForm('accounts payments')),
      inspect: keepToken('full'),
    },
    {
      title: 'TPP A calls the accounts API with its token and its certificate',
      request: `GET ${url}${ACCOUNTS}   [TLS certificate: TPP A]  Authorization: Bearer <token of step 1>`,
      expected: { status: 200 },
      run: () => api(asA, ACCOUNTS, tokens.full),
      inspect: (reply) => {
        const data = reply.json().Data as { Account?: Array<{ AccountId: string }> } | undefined;
        const ids = (data?.Account ?? []).map((a) => a.AccountId);
        return { ok: ids.length > 0, note: `accounts ${ids.join(', ')}` };
      },
    },
    {
      title: "The same token with TPP B's certificate (a stolen token)",
      request: `GET ${url}${ACCOUNTS}   [TLS certificate: TPP B]  Authorization: Bearer <token of step 1>`,
      expected: { status: 401, error: 'invalid_token' },
      run: () => api(asB, ACCOUNTS, tokens.full),
    },
    {
      title: 'The same token without any client certificate',
      request: `GET ${url}${ACCOUNTS}   [no TLS certificate]  Authorization: Bearer <token of step 1>`,
      expected: { status: 401, error: 'invalid_token' },
      run: () => api(anonymous, ACCOUNTS, tokens.full),
    },
    {
      title: 'TPP A gets a second token, for accounts only',
      request: `POST ${url}/token   [TLS certificate: TPP A]\n      ${form(ccForm('accounts'))}`,
      expected: { status: 200 },
      run: () => tokenCall(asA, ccForm('accounts')),
      inspect: keepToken('accountsOnly'),
    },
    {
      title: 'Wrong scope: a payment consent with the accounts-only token',
      request: `POST ${url}${PAYMENT_CONSENTS}   [TLS certificate: TPP A]  Authorization: Bearer <token of step 5>`,
      expected: { status: 403, error: 'insufficient_scope' },
      run: () => api(asA, PAYMENT_CONSENTS, tokens.accountsOnly, PAYMENT),
    },
    {
      title: 'The same payment consent with the token of step 1 (scope payments)',
      request: `POST ${url}${PAYMENT_CONSENTS}   [TLS certificate: TPP A]  Authorization: Bearer <token of step 1>`,
      expected: { status: 201 },
      run: () => api(asA, PAYMENT_CONSENTS, tokens.full, PAYMENT),
      inspect: (reply) => {
        const data = reply.json().Data as { ConsentId?: string; Status?: string } | undefined;
        return { ok: typeof data?.ConsentId === 'string', note: `consent ${data?.ConsentId ?? '?'}, ${data?.Status ?? '?'}` };
      },
    },
    {
      title: 'The token endpoint without a client certificate (the token filter)',
      request: `POST ${url}/token   [no TLS certificate]\n      ${form(ccForm('accounts'))}`,
      expected: { status: 400, error: 'invalid_request' },
      run: async () => {
        asSeenBefore = asSeen();
        return tokenCall(anonymous, ccForm('accounts'));
      },
      inspect: () => {
        const reached = asSeen() - asSeenBefore;
        return { ok: reached === 0, note: reached === 0 ? 'stopped by certbound: the authorization server saw nothing' : `the authorization server saw ${reached} request(s)` };
      },
    },
    {
      title: `TPP A's DPoP client gets a token bound to its key (${DPOP_CLIENT_IDS.a}: tls_client_auth, plus a DPoP proof)`,
      request: `POST ${url}/token   [TLS certificate: TPP A]  DPoP: <proof, htu ${url}/token>\n      ${form(dpopForm)}`,
      expected: { status: 200 },
      run: dpopTokenCall,
      inspect: (reply) => {
        const body = reply.json();
        const value = body.access_token;
        if (typeof value !== 'string') return { ok: false, note: 'no access_token in the answer' };
        dpop.token = remember(value);
        const forwarded = demo.backends.as.requests.at(-1)?.headers.dpop === dpop.tokenProof;
        const ok = body.token_type === 'DPoP' && forwarded;
        return {
          ok,
          note: `access_token ${abbreviated(value)}, token_type "${String(body.token_type)}"; ${forwarded ? 'the authorization server received the DPoP header as sent' : 'the DPoP header did not reach the authorization server unchanged'}`,
        };
      },
    },
    {
      title: 'A DPoP request: the balance of account 31820 with that token and a proof signed by its key (no client certificate)',
      request: `GET ${url}${SAVINGS_BALANCES}   [no TLS certificate]  Authorization: DPoP <token of step 9>  DPoP: <proof, htu ${demo.publicUrl}${SAVINGS_BALANCES}>`,
      expected: { status: 200 },
      run: () => dpopApi(dpopKey),
      inspect: (reply) => {
        const data = reply.json().Data as { Balance?: Array<{ Amount?: { Amount?: string; Currency?: string } }> } | undefined;
        const amount = data?.Balance?.[0]?.Amount;
        const seen = bankSeen()?.headers;
        const ok = amount !== undefined && seen?.['x-certbound-dpop-jkt'] === dpopJkt && seen.authorization === undefined && seen.dpop === undefined;
        return { ok, note: `balance ${amount?.Amount ?? '?'} ${amount?.Currency ?? ''}; the bank API got x-certbound-dpop-jkt ${String(seen?.['x-certbound-dpop-jkt'])} (the key's RFC 7638 thumbprint), no token, no proof` };
      },
    },
    {
      title: 'The same DPoP token with a proof signed by another key (a stolen token)',
      request: `GET ${url}${SAVINGS_BALANCES}   [no TLS certificate]  Authorization: DPoP <token of step 9>  DPoP: <proof by the thief's key>`,
      expected: { status: 401, error: 'invalid_token' },
      run: () => dpopApi(thiefKey),
    },
  ];

  let allMatched = true;
  try {
    for (const [i, step] of steps.entries()) {
      say(bold(`${i + 1}. ${step.title}`));
      say(dim(`   ${step.request}`));
      let reply: Reply;
      try {
        reply = await step.run();
      } catch (error) {
        allMatched = false;
        say(`   expected ${describe(step.expected)}, got ${red(`no answer (${error instanceof Error ? error.message : String(error)})`)}  ${red('✘')}`);
        continue;
      }
      const error = errorOf(reply);
      let matched = reply.status === step.expected.status && (step.expected.error === undefined || error === step.expected.error);
      let note = '';
      if (matched && step.inspect) {
        const inspected = step.inspect(reply);
        matched = inspected.ok;
        note = inspected.note;
      }
      const got = `${reply.status}${error ? ` ${error}` : ''}`;
      say(`   expected ${describe(step.expected)}, got ${matched ? green(got) : red(got)}  ${matched ? green('✔') : red('✘')}`);
      const challenge = reply.headers['www-authenticate'];
      // A route taking Bearer and DPoP sends one challenge of each.
      const challenges = typeof challenge === 'string' ? [challenge] : challenge ?? [];
      for (const line of challenges) say(dim(`   WWW-Authenticate: ${line}`));
      if (challenges.length === 0 && error) say(dim(`   ${reply.text}`));
      if (note) say(dim(`   ${note}`));
      if (!matched) allMatched = false;
    }
    // Not an HTTP step: the gateway's own log, after all of the above.
    const logged = readFileSync(demo.logFile, 'utf8');
    const leaked = [...secrets].filter((s) => logged.includes(s)).length;
    const lines = logged.split('\n').filter(Boolean).length;
    say(bold(`${steps.length + 1}. The gateway log holds no token, no DPoP proof and no client secret`));
    say(dim(`   ${demo.logFile}: ${lines} JSON lines, checked for ${secrets.size} secret values`));
    say(`   expected 0 found, got ${leaked === 0 ? green('0') : red(String(leaked))}  ${leaked === 0 ? green('✔') : red('✘')}`);
    if (leaked > 0) allMatched = false;
  } finally {
    await Promise.allSettled([asA.close(), asB.close(), anonymous.close()]);
  }
  return allMatched;
}

const describe = (e: Expectation): string => `${e.status}${e.error ? ` ${e.error}` : ''}`;

function errorOf(reply: Reply): string | undefined {
  if (!String(reply.headers['content-type'] ?? '').startsWith('application/json')) return undefined;
  try {
    const error = reply.json().error;
    return typeof error === 'string' ? error : undefined;
  } catch {
    return undefined;
  }
}

function curlCommands(demo: Demo): string {
  const tpp = (name: string) => `--cert $D/${name}.crt --key $D/${name}.key --cacert $D/ca.crt`;
  const token = `curl -s ${tpp('tpp-a')} $GW/token -d grant_type=client_credentials -d client_id=tpp-a --data-urlencode 'scope=accounts payments'`;
  return [
    `D=${demo.pki.dir} GW=${demo.url} ADMIN=${demo.adminUrl}`,
    '',
    "# A token for TPP A (its certificate authenticates it: tls_client_auth), bound to that certificate:",
    token,
    `TOKEN=$(${token} | sed -E 's/.*"access_token":"([^"]+)".*/\\1/')`,
    '',
    "# The API with TPP A's certificate → 200; with TPP B's → 401 invalid_token; without one → 401:",
    `curl -i ${tpp('tpp-a')} -H "Authorization: Bearer $TOKEN" $GW${ACCOUNTS}`,
    `curl -i ${tpp('tpp-b')} -H "Authorization: Bearer $TOKEN" $GW${ACCOUNTS}`,
    `curl -i --cacert $D/ca.crt -H "Authorization: Bearer $TOKEN" $GW${ACCOUNTS}`,
    '',
    '# A balance, and a payment consent (scope payments) → 201:',
    `curl -i ${tpp('tpp-a')} -H "Authorization: Bearer $TOKEN" $GW${ACCOUNTS}/22289/balances`,
    `curl -i ${tpp('tpp-a')} -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{"Data":{"Initiation":{"InstructedAmount":{"Amount":"10.00","Currency":"GBP"}}},"Risk":{}}' $GW${PAYMENT_CONSENTS}`,
    '',
    '# DPoP (steps 9 to 11) needs a fresh signed proof per request, which curl cannot make: see docs/demo.md.',
    '',
    '# The token endpoint without a certificate → 400 invalid_request (never reaches the server):',
    `curl -i --cacert $D/ca.crt $GW/token -d grant_type=client_credentials -d client_id=tpp-a`,
    '',
    '# Revoke the token (through certbound, as TPP A); the API refuses it once its cache entry ends (≤ 60 s):',
    `curl -i ${tpp('tpp-a')} $GW/token/revocation -d client_id=tpp-a --data-urlencode "token=$TOKEN"`,
    '',
    '# Discovery through certbound, metrics and readiness:',
    `curl -s --cacert $D/ca.crt $GW/.well-known/openid-configuration`,
    `curl -s $ADMIN/metrics | grep ^certbound_`,
    `curl -i $ADMIN/readyz`,
  ].join('\n');
}

async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    say(USAGE);
    return 0;
  }
  const unknown = argv.filter((a) => a !== '--once');
  if (unknown.length > 0) {
    process.stderr.write(`unknown argument: ${unknown.join(' ')}\n\n${USAGE}\n`);
    return 2;
  }
  const once = argv.includes('--once');
  const dir = mkdtempSync(join(tmpdir(), 'certbound-demo-'));
  let demo: Demo | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (demo) {
        await demo.runtime.shutdown();
        await demo.backends.close();
      }
      rmSync(dir, { recursive: true, force: true });
    })();
    return stopping;
  };

  try {
    demo = await start(dir);
  } catch (error) {
    await stop();
    const message = error instanceof ConfigError ? `gateway.yaml:\n  ${error.problems.join('\n  ')}` : error instanceof Error ? error.message : String(error);
    process.stderr.write(`demo: cannot start: ${message}\n`);
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      process.stderr.write('demo: a port is taken; choose others with CERTBOUND_PORT, CERTBOUND_ADMIN_PORT, CERTBOUND_AS_PORT, CERTBOUND_BANK_PORT (0 = any free port)\n');
    }
    return 1;
  }

  say(bold('certbound demo') + dim('  (every process below runs inside this one; Ctrl-C stops them all)'));
  say(`  PKI                   ${demo.pki.dir}  ${dim('(throw-away CA, RSA server certificate, TPP A, B, C; deleted on exit)')}`);
  say(`  authorization server  ${demo.backends.as.url}  ${dim('(oidc-provider; TPP A, B: tls_client_auth, TPP C: private_key_jwt, tpp-a-dpop, tpp-b-dpop: DPoP-bound tokens)')}`);
  say(`  bank API              ${demo.backends.bank.url}  ${dim('(accounts, balances, payment consents)')}`);
  say(`  certbound             ${demo.url}  ${dim(`(gateway.yaml; admin ${demo.adminUrl})`)}`);
  say(`  gateway log           ${demo.logFile}`);
  say();

  const matched = await walkthrough(demo);
  say();
  say(matched ? green(bold('Every step matched.')) : red(bold('Some steps did not match (✘ above).')));

  if (once) {
    await stop();
    return matched ? 0 : 1;
  }

  say();
  say(bold('Try it yourself') + dim(' (paste into another terminal while this one runs):'));
  say();
  say(curlCommands(demo));
  say();
  say(dim('Press Ctrl-C to stop.'));
  return new Promise<number>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      say(dim(`\n${signal}: stopping certbound, the authorization server and the bank API…`));
      // A second Ctrl-C does not wait for the drain.
      process.once('SIGINT', () => resolve(130));
      void stop().then(() => resolve(matched ? 0 : 1));
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`demo: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
    process.exit(1);
  },
);
