// The demo's moving parts, shared with the end-to-end tests: a throw-away PKI on disk, the
// authorization server (oidc-provider) and the sample bank API, plus the environment that points
// the repository's gateway.yaml at them. Everything listens on 127.0.0.1.
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeDemoPki, type DemoPki } from '../test/fixtures/pki.js';
import { dpopClients, startAuthorizationServer, tppClients, type AuthorizationServerFixture, type TtlName } from '../test/fixtures/authorization-server.js';
import { startBankApi, type BankApiFixture } from '../test/fixtures/bank-api.js';

export const REPOSITORY_ROOT = fileURLToPath(new URL('../', import.meta.url));
export const GATEWAY_YAML = resolve(REPOSITORY_ROOT, 'gateway.yaml');

/** The demo's throw-away PKI: CA, RSA server certificate, TPP A/B/C. */
export const generatePki = (dir: string): Promise<DemoPki> => writeDemoPki(dir);

export interface Backends {
  readonly as: AuthorizationServerFixture;
  readonly bank: BankApiFixture;
  /** certbound's introspection secret at the authorization server, random per run. */
  readonly clientSecret: string;
  close(): Promise<void>;
}

export interface BackendOptions {
  /** Loopback ports; 0 (default) picks free ones. */
  readonly asPort?: number;
  readonly bankPort?: number;
  /** Token lifetimes at the authorization server, in seconds. */
  readonly ttl?: Partial<Record<TtlName, number>>;
}

/**
 * The authorization server (TPP A, B, C, their DPoP clients tpp-a-dpop and tpp-b-dpop, and
 * certbound registered; TPP certificates must chain to the demo CA) and the bank API.
 */
export async function startBackends(pki: DemoPki, opts: BackendOptions = {}): Promise<Backends> {
  const clientSecret = randomBytes(24).toString('base64url');
  const as = await startAuthorizationServer({
    clients: [...tppClients(pki, { certboundClientSecret: clientSecret }), ...dpopClients(pki)],
    trustedCaPem: pki.ca.certPem,
    ...(opts.asPort !== undefined ? { port: opts.asPort } : {}),
    ...(opts.ttl ? { ttl: opts.ttl } : {}),
  });
  let bank: BankApiFixture;
  try {
    bank = await startBankApi(opts.bankPort !== undefined ? { port: opts.bankPort } : {});
  } catch (error) {
    await as.close();
    throw error;
  }
  return {
    as,
    bank,
    clientSecret,
    close: async () => {
      await Promise.allSettled([as.close(), bank.close()]);
    },
  };
}

/** The variables gateway.yaml expands (see its header). Ports as strings; '0' picks a free one. */
export function gatewayEnv(pki: DemoPki, backends: Backends, ports: { traffic?: number; admin?: number } = {}): Record<string, string> {
  return {
    CERTBOUND_TLS_DIR: pki.dir,
    CERTBOUND_AS_URL: backends.as.url,
    CERTBOUND_BANK_URL: backends.bank.url,
    CERTBOUND_CLIENT_SECRET: backends.clientSecret,
    CERTBOUND_PORT: String(ports.traffic ?? 0),
    CERTBOUND_ADMIN_PORT: String(ports.admin ?? 0),
  };
}
