import { validateHeaderValue } from 'node:http';
import { PRESETS } from '../certificate/presets.js';
import { createProxyTrust } from '../certificate/trust.js';
import { algorithmsFor } from '../token/client-auth.js';
import { Problems } from './problems.js';
import { resolveDpop } from './resolve-dpop.js';
import { resolveAdmin, resolveSharedState } from './resolve-shared.js';
import { resolveRoutes, resolveUpstreams, takesToken } from './resolve-routes.js';
import type {
  AuthorizationServerConfig, ClientAuthConfig, ClientCertificateConfig, Config, Document, IntrospectionConfig, JwksConfig, KeyFile,
  ListenConfig, PemFile, RevocationConfig, RouteConfig, TokenValidation, UpstreamConfig,
} from './types.js';

/**
 * The compile step's checks that a schema cannot say: files that must read and parse, keys that
 * depend on other keys, cross-references, and what each mode requires. Every problem is collected
 * with its key path (./problems.ts); the result is the Config the gateway is built from.
 */

/** Whether the key is the private half of the file's first certificate (what TLS presents). */
const keyMatches = (cert: PemFile, key: KeyFile): boolean => cert.certificates[0]?.checkPrivateKey(key.key) === true;

function resolveListen(doc: Document['listen'], p: Problems): ListenConfig {
  const { tls: tlsDoc, headersTimeoutMs: headers, ...rest } = doc;
  let tls: ListenConfig['tls'];
  if (tlsDoc) {
    const { certFile, keyFile, clientCaFile, ...options } = tlsDoc;
    const cert = p.certificates('listen.tls.cert_file', certFile);
    const key = p.privateKey('listen.tls.key_file', keyFile);
    const clientCa = p.certificates('listen.tls.client_ca_file', clientCaFile);
    if (cert && key && !keyMatches(cert, key)) p.add('listen.tls.key_file', `${key.path} is not the private key of cert_file's certificate`);
    else if (cert && key) tls = { ...options, cert, key, ...(clientCa ? { clientCa } : {}) };
  }
  // Default 10 s, or the request timeout when that is shorter (Node refuses a longer one).
  const headersTimeoutMs = headers ?? Math.min(10000, doc.requestTimeoutMs || 10000);
  if (doc.requestTimeoutMs !== 0 && headersTimeoutMs > doc.requestTimeoutMs) {
    p.add('listen.headers_timeout_ms', `must not exceed request_timeout_ms (${doc.requestTimeoutMs})`);
  }
  return { ...rest, ...(tls ? { tls } : {}), headersTimeoutMs };
}

function resolveClientCertificate(doc: Document['clientCertificate'], clientCa: PemFile | undefined, p: Problems): ClientCertificateConfig {
  const at = 'client_certificate';
  const { preset: presetName, header, format, clientCertificateEncode, chainHeader, verifyHeader, verifyHeaderValue, verify: verifyDoc, ...rest } = doc;
  const preset = presetName === undefined ? undefined : PRESETS[presetName];
  if (presetName !== undefined && !preset) p.add(`${at}.preset`, `unknown preset "${presetName}" (known: ${Object.keys(PRESETS).join(', ')})`);
  doc.trustedProxies.forEach((entry, i) => {
    try {
      createProxyTrust([entry]);
    } catch {
      p.add(`${at}.trusted_proxies[${i}]`, `"${entry}" is not an IP address or CIDR`);
    }
  });
  if (doc.source === 'header' && doc.trustedProxies.length === 0) {
    p.add(`${at}.trusted_proxies`, 'is required when source is header (the header is only honoured from these peers)');
  }
  const ca = p.certificates(`${at}.verify.ca_file`, verifyDoc.caFile);
  if (doc.source === 'tls' && verifyDoc.caFile !== undefined) p.add(`${at}.verify.ca_file`, 'applies to source: header; with source: tls set listen.tls.client_ca_file');
  if (doc.source === 'tls' && verifyDoc.requireClientAuthEku) p.add(`${at}.verify.require_client_auth_eku`, 'applies to source: header only');
  const chain = chainHeader ?? preset?.chainHeader;
  const verifyName = verifyHeader ?? preset?.verifyHeader?.name;
  const success = verifyHeaderValue ?? preset?.verifyHeader?.success ?? ['SUCCESS'];
  success.forEach((value, i) => {
    try {
      validateHeaderValue('x', value);
    } catch {
      p.add(`${at}.verify_header_value[${i}]`, 'is not a valid header value');
    }
  });
  return {
    ...rest,
    revocation: resolveRevocation(doc.revocation, clientCa ?? ca, p),
    ...(presetName !== undefined ? { preset: presetName } : {}),
    header: p.headerName(`${at}.header`, header ?? preset?.header ?? 'x-wso2-client-certificate'),
    format: format ?? preset?.format ?? 'pem',
    encoded: clientCertificateEncode ?? preset?.encoded ?? true,
    ...(chain ? { chainHeader: p.headerName(`${at}.chain_header`, chain) } : {}),
    ...(verifyName ? { verifyHeader: { name: p.headerName(`${at}.verify_header`, verifyName), success } } : {}),
    verify: { checkValidity: verifyDoc.checkValidity, requireClientAuthEku: verifyDoc.requireClientAuthEku, ...(ca ? { ca } : {}) },
  };
}

function resolveRevocation(doc: Document['clientCertificate']['revocation'], fallback: PemFile | undefined, p: Problems): RevocationConfig {
  const at = 'client_certificate.revocation';
  // Files are read whatever the mode: so a missing one is reported, and the watcher sees them.
  const named = p.certificates(`${at}.issuer_file`, doc.issuerFile);
  const files = doc.crl.files.map((name, i) => p.file(`${at}.crl.files[${i}]`, name)).filter((f) => f !== undefined);
  const ocspUrl = doc.ocsp.url === '' ? undefined : doc.ocsp.url;
  [...(ocspUrl === undefined ? [] : [['ocsp.url', ocspUrl] as const]), ...doc.crl.urls.map((u, i) => [`crl.urls[${i}]`, u] as const)].forEach(([key, value]) => {
    if (!URL.canParse(value)) p.add(`${at}.${key}`, `"${value}" is not an http(s) URL`);
  });
  if (doc.mode !== 'soft_fail' && doc.mode !== 'hard_fail') return { mode: 'off' };
  const issuers = named ?? fallback;
  if (doc.issuerFile === undefined && issuers === undefined) {
    p.add(`${at}.issuer_file`, `is required when mode is ${doc.mode} (there is no listen.tls.client_ca_file or client_certificate.verify.ca_file to default to)`);
  }
  const order = doc.order.filter((source) => doc[source].enabled);
  if (order.length === 0) p.add(`${at}.order`, `names no enabled source (ocsp.enabled and crl.enabled are ${doc.ocsp.enabled} and ${doc.crl.enabled})`);
  if (issuers === undefined || order.length === 0) return { mode: 'off' };
  const { enabled: _o, url, ...ocsp } = doc.ocsp;
  const { enabled: _c, files: _f, ...crl } = doc.crl;
  return {
    mode: doc.mode,
    issuers,
    ...(doc.ocsp.enabled ? { ocsp: { ...ocsp, ...(url !== undefined && url !== '' ? { url } : {}) } } : {}),
    ...(doc.crl.enabled ? { crl: { ...crl, files } } : {}),
    order,
    clockSkewSeconds: doc.clockSkewSeconds,
    retryAfterSeconds: doc.retryAfterSeconds,
    cacheEntries: doc.cacheEntries,
  };
}

/** The authorization server's files, each read (and checked) when named, whatever the mode: as before, and so the reload watcher sees them. */
interface ServerFiles {
  readonly privateKey?: KeyFile;
  /** The algorithm the private key signs with, when it can sign with the one asked for (or any). */
  readonly algorithm?: string;
  /** certbound's TLS client certificate and key, when both load and match. */
  readonly tlsClient?: { readonly cert: PemFile; readonly key: KeyFile };
}

function serverFiles(as: NonNullable<Document['authorizationServer']>, p: Problems): ServerFiles {
  const at = 'authorization_server';
  const privateKey = p.privateKey(`${at}.private_key_file`, as.privateKeyFile);
  let algorithm: string | undefined;
  if (privateKey) {
    const usable = algorithmsFor(privateKey.key);
    if (usable.length === 0) p.add(`${at}.private_key_file`, `${privateKey.path}: unsupported key type for private_key_jwt (RSA, EC P-256/384/521 or Ed25519)`);
    else if (as.signingAlgorithm !== undefined && !usable.includes(as.signingAlgorithm)) {
      p.add(`${at}.signing_algorithm`, `"${as.signingAlgorithm}" cannot sign with this key (one of ${usable.join(', ')})`);
    } else algorithm = as.signingAlgorithm ?? usable[0];
  }
  const cert = p.certificates(`${at}.client_cert_file`, as.clientCertFile);
  const key = p.privateKey(`${at}.client_key_file`, as.clientKeyFile);
  const matched = cert !== undefined && key !== undefined && keyMatches(cert, key);
  if (cert && key && !matched) p.add(`${at}.client_key_file`, `${key.path} is not the private key of client_cert_file's certificate`);
  return { ...(privateKey ? { privateKey } : {}), ...(algorithm ? { algorithm } : {}), ...(matched ? { tlsClient: { cert, key } } : {}) };
}

function clientAuthentication(as: NonNullable<Document['authorizationServer']>, clientId: string, files: ServerFiles, p: Problems): ClientAuthConfig | undefined {
  const at = 'authorization_server';
  switch (as.clientAuthMethod) {
    case 'client_secret_basic':
    case 'client_secret_post':
      if (as.clientSecret === undefined) return void p.add(`${at}.client_secret`, `is required for ${as.clientAuthMethod}`);
      return { method: as.clientAuthMethod, clientId, secret: as.clientSecret };
    case 'private_key_jwt':
      if (as.privateKeyFile === undefined) return void p.add(`${at}.private_key_file`, 'is required for private_key_jwt');
      if (!files.privateKey || !files.algorithm) return undefined; // its problem is reported already
      return { method: 'private_key_jwt', clientId, key: files.privateKey, algorithm: files.algorithm, audience: as.assertionAudience ?? as.issuer };
    case 'tls_client_auth':
      if (as.clientCertFile === undefined) p.add(`${at}.client_cert_file`, 'is required for tls_client_auth');
      if (as.clientKeyFile === undefined) p.add(`${at}.client_key_file`, 'is required for tls_client_auth');
      if (!files.tlsClient) return undefined;
      return { method: 'tls_client_auth', clientId, cert: files.tlsClient.cert, key: files.tlsClient.key };
  }
}

function resolveAuthorizationServer(doc: Document, p: Problems): AuthorizationServerConfig | undefined {
  const as = doc.authorizationServer;
  const at = 'authorization_server';
  if (!as) {
    const route = doc.routes.find((r) => takesToken(r.auth));
    if (route) p.add(at, `is required by routes with auth: ${route.auth}`);
    return undefined;
  }
  const mode = doc.tokenValidation;
  as.allowedAlgorithms.forEach((alg, i) => {
    if (alg === 'none' || alg.startsWith('HS')) p.add(`${at}.allowed_algorithms[${i}]`, `"${alg}" is not allowed: access tokens must be signed with an asymmetric key`);
  });
  [['issuer', as.issuer], ['introspection_endpoint', as.introspectionEndpoint], ['jwks_uri', as.jwksUri]].forEach(([key, value]) => {
    if (value !== undefined && !URL.canParse(value)) p.add(`${at}.${key}`, `"${value}" is not an http(s) URL`);
  });
  const files = serverFiles(as, p);

  let introspection: IntrospectionConfig | undefined;
  if (mode !== 'jwt') {
    if (as.introspectionEndpoint === undefined) p.add(`${at}.introspection_endpoint`, 'is required');
    if (as.clientId === undefined) p.add(`${at}.client_id`, 'is required');
    const authentication = as.clientId === undefined ? undefined : clientAuthentication(as, as.clientId, files, p);
    if (as.introspectionEndpoint !== undefined && authentication) introspection = { endpoint: as.introspectionEndpoint, authentication, signed: as.signedIntrospection };
  }
  const needsKeys = mode !== 'introspection' || as.signedIntrospection;
  if (needsKeys && as.jwksUri === undefined) p.add(`${at}.jwks_uri`, 'is required');
  const jwks: JwksConfig | undefined = as.jwksUri === undefined ? undefined : { uri: as.jwksUri, cooldownSeconds: as.jwksCooldownSeconds, maxAgeSeconds: as.jwksMaxAgeSeconds };
  if (mode !== 'introspection' && as.audience === undefined) p.add(`${at}.audience`, 'is required when token_validation is jwt or auto');
  const jwt = as.audience === undefined ? undefined : { audience: as.audience };

  let validation: TokenValidation | undefined;
  if (mode === 'introspection' && introspection) {
    validation = introspection.signed ? (jwks ? { mode, introspection: { ...introspection, signed: true }, jwks } : undefined) : { mode, introspection: { ...introspection, signed: false } };
  } else if (mode === 'jwt' && jwt && jwks) validation = { mode, jwt, jwks };
  else if (mode === 'auto' && introspection && jwt && jwks) validation = { mode, introspection, jwt, jwks };
  const ca = p.certificates(`${at}.ca_file`, as.caFile);
  if (!validation) return undefined;
  // On every connection to the server (introspection and JWKS alike), as the method says.
  const tlsClient = as.clientAuthMethod === 'tls_client_auth' ? files.tlsClient : undefined;
  return {
    issuer: as.issuer,
    timeoutMs: as.timeoutMs,
    clockSkewSeconds: as.clockSkewSeconds,
    maxConcurrentRequests: as.maxConcurrentRequests,
    retryAfterSeconds: as.retryAfterSeconds,
    requireTokenType: as.requireTokenType,
    allowedAlgorithms: as.allowedAlgorithms,
    cache: as.cache,
    ...(ca ? { ca } : {}),
    ...(tlsClient ? { clientCertificate: { cert: tlsClient.cert, key: tlsClient.key } } : {}),
    ...(as.audience !== undefined ? { audience: as.audience } : {}),
    validation,
  };
}

/** The validated, camel-cased document → Config, or every problem the schema could not catch. */
export function resolveConfig(doc: Document, baseDir: string, source: string): { config?: Config; problems: readonly string[] } {
  const p = new Problems(baseDir);
  const listen = resolveListen(doc.listen, p);
  const clientCertificate = resolveClientCertificate(doc.clientCertificate, listen.tls?.clientCa, p);
  const upstreams = resolveUpstreams(doc.upstreams, p);
  const routes = resolveRoutes(doc, doc.upstreams, p);
  const authorizationServer = resolveAuthorizationServer(doc, p);
  const ih = doc.identityHeaders;
  const identityHeaders = {
    clientId: p.headerName('identity_headers.client_id', ih.clientId),
    subject: p.headerName('identity_headers.subject', ih.subject),
    scope: p.headerName('identity_headers.scope', ih.scope),
    certificateThumbprint: p.headerName('identity_headers.certificate_thumbprint', ih.certificateThumbprint),
    organizationId: p.headerName('identity_headers.organization_id', ih.organizationId),
    psd2Roles: p.headerName('identity_headers.psd2_roles', ih.psd2Roles),
    dpopJkt: p.headerName('identity_headers.dpop_jkt', ih.dpopJkt),
  };
  const dpop = resolveDpop(doc.dpop, p);
  const admin = resolveAdmin(doc.admin, p);
  const sharedState = resolveSharedState(doc.sharedState, p);
  try {
    validateHeaderValue('www-authenticate', `Bearer realm="${doc.realm}"`);
  } catch {
    p.add('realm', 'must be printable ASCII without " or \\');
  }
  if (p.list.length > 0) return { problems: p.list };
  const { authorizationServer: _document, sharedState: _shared, ...settled } = doc;
  const config: Config = {
    ...settled,
    source,
    listen,
    clientCertificate,
    ...(authorizationServer ? { authorizationServer } : {}),
    upstreams,
    routes,
    admin,
    dpop,
    ...(sharedState ? { sharedState } : {}),
    identityHeaders,
    files: [...new Set(p.files)],
  };
  return { config: Object.freeze(config), problems: [] };
}
