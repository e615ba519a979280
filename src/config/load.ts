import { readFileSync } from 'node:fs';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { isIP } from 'node:net';
import { parseDocument } from 'yaml';
import { PRESETS } from '../certificate/presets.js';
import { pemCertificateBlocks } from '../certificate/verify.js';
import { normalizePrefix } from '../route.js';
import { JWS_ALGORITHMS, algorithmsFor } from '../token/client-auth.js';
import type {
  AuthMode,
  AuthorizationServerConfig,
  CertificateFormat,
  ClientAuthMethod,
  ClientCertificateConfig,
  Config,
  IdentityHeadersConfig,
  ListenConfig,
  LoadedFile,
  RouteConfig,
  TokenValidationMode,
  UpstreamConfig,
} from './types.js';

/** Every problem found, each naming its key path: `routes[2].upstream: unknown upstream "bank"`. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'));
  }
}

/** FAPI 1.0 Part 2 §8.5: the only TLS 1.2 suites allowed. */
export const FAPI_TLS12_CIPHERS = [
  'DHE-RSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'DHE-RSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
].join(':');

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;
const FORMATS: readonly CertificateFormat[] = ['pem', 'der-base64', 'rfc9440', 'xfcc', 'traefik', 'aws-alb'];
const AUTH_MODES: readonly AuthMode[] = ['certificate_bound_token', 'mtls', 'none'];
const CLIENT_AUTH: readonly ClientAuthMethod[] = [
  'client_secret_basic',
  'client_secret_post',
  'private_key_jwt',
  'tls_client_auth',
];
const VALIDATION: readonly TokenValidationMode[] = ['introspection', 'jwt', 'auto'];
const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const ROUTE_NAME = /^[A-Za-z0-9_.-]+$/;

type Env = Readonly<Record<string, string | undefined>>;
type Obj = Record<string, unknown>;

/** `${VAR}` and `${VAR:-default}`, applied to string values after YAML parsing (no YAML injection). */
export function interpolate(value: string, env: Env, path: string, problems: string[]): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_m, name: string, fallback?: string) => {
    const v = env[name];
    if (v !== undefined && v !== '') return v;
    if (fallback !== undefined) return fallback;
    problems.push(`${path}: environment variable ${name} is not set`);
    return '';
  });
}

function interpolateTree(node: unknown, env: Env, path: string, problems: string[]): unknown {
  if (typeof node === 'string') return interpolate(node, env, path, problems);
  if (Array.isArray(node)) return node.map((v, i) => interpolateTree(v, env, `${path}[${i}]`, problems));
  if (node !== null && typeof node === 'object') {
    const out: Obj = {};
    for (const [k, v] of Object.entries(node)) out[k] = interpolateTree(v, env, path ? `${path}.${k}` : k, problems);
    return out;
  }
  return node;
}

/** Reads typed values out of one YAML mapping, recording problems with their key paths. */
class Section {
  private readonly seen = new Set<string>();
  constructor(
    readonly path: string,
    private readonly obj: Obj,
    private readonly problems: string[],
    private readonly baseDir: string,
  ) {}

  static of(value: unknown, path: string, problems: string[], baseDir: string): Section {
    if (value === undefined || value === null) return new Section(path, {}, problems, baseDir);
    if (typeof value !== 'object' || Array.isArray(value)) {
      problems.push(`${path}: must be a mapping`);
      return new Section(path, {}, problems, baseDir);
    }
    return new Section(path, value as Obj, problems, baseDir);
  }

  at(key: string): string {
    return this.path ? `${this.path}.${key}` : key;
  }
  problem(key: string, message: string): void {
    this.problems.push(`${this.at(key)}: ${message}`);
  }
  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }
  raw(key: string): unknown {
    this.seen.add(key);
    return this.obj[key];
  }
  section(key: string): Section {
    return Section.of(this.raw(key), this.at(key), this.problems, this.baseDir);
  }

  string(key: string): string | undefined;
  string(key: string, fallback: string): string;
  string(key: string, fallback?: string): string | undefined {
    const v = this.raw(key);
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'string' && typeof v !== 'number') {
      this.problem(key, 'must be a string');
      return fallback;
    }
    return String(v);
  }
  required(key: string): string {
    const v = this.string(key);
    if (v === undefined || v === '') {
      if (v === undefined) this.problem(key, 'is required');
      else this.problem(key, 'must not be empty');
      return '';
    }
    return v;
  }
  oneOf<T extends string>(key: string, allowed: readonly T[], fallback: T): T {
    const v = this.string(key);
    if (v === undefined) return fallback;
    if (!(allowed as readonly string[]).includes(v)) {
      this.problem(key, `must be one of ${allowed.join(', ')} (got "${v}")`);
      return fallback;
    }
    return v as T;
  }
  int(key: string, fallback: number, min: number, max: number): number {
    const v = this.raw(key);
    if (v === undefined || v === null) return fallback;
    const n = typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
      this.problem(key, `must be an integer from ${min} to ${max}`);
      return fallback;
    }
    return n;
  }
  bool(key: string, fallback: boolean): boolean {
    const v = this.raw(key);
    if (v === undefined || v === null) return fallback;
    if (v === true || v === 'true') return true;
    if (v === false || v === 'false') return false;
    this.problem(key, 'must be true or false');
    return fallback;
  }
  strings(key: string, fallback: readonly string[]): string[] {
    const v = this.raw(key);
    if (v === undefined || v === null) return [...fallback];
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || x === '')) {
      this.problem(key, 'must be a list of non-empty strings');
      return [...fallback];
    }
    return v as string[];
  }
  headerName(key: string, fallback: string): string;
  headerName(key: string): string | undefined;
  headerName(key: string, fallback?: string): string | undefined {
    const v = fallback === undefined ? this.string(key) : this.string(key, fallback);
    if (v === undefined) return undefined;
    if (!HEADER_NAME.test(v)) {
      this.problem(key, `"${v}" is not a valid header name`);
      return fallback;
    }
    return v.toLowerCase();
  }
  url(key: string, required: boolean): string | undefined {
    const v = required ? this.required(key) : this.string(key);
    if (v === undefined || v === '') return undefined;
    try {
      const u = new URL(v);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
      return v;
    } catch {
      this.problem(key, `"${v}" is not an http(s) URL`);
      return undefined;
    }
  }
  file(key: string, required = false): LoadedFile | undefined {
    const v = required ? this.required(key) : this.string(key);
    if (v === undefined || v === '') return undefined;
    const path = resolve(this.baseDir, v);
    try {
      return { path, contents: readFileSync(path) };
    } catch (e) {
      this.problem(key, `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
      return undefined;
    }
  }
  /** A PEM file holding at least one certificate, every one of which parses. */
  certificates(key: string, required = false): LoadedFile | undefined {
    const f = this.file(key, required);
    if (!f) return undefined;
    const blocks = pemCertificateBlocks(f.contents);
    if (blocks.length === 0) this.problem(key, `${f.path} holds no PEM certificate`);
    for (const block of blocks) {
      try {
        new X509Certificate(block);
      } catch {
        this.problem(key, `${f.path} holds a certificate that does not parse`);
        return undefined;
      }
    }
    return blocks.length > 0 ? f : undefined;
  }
  /** A PEM private key that parses (never echoed). */
  privateKey(key: string, required = false): LoadedFile | undefined {
    const f = this.file(key, required);
    if (!f) return undefined;
    try {
      createPrivateKey(f.contents);
      return f;
    } catch {
      this.problem(key, `${f.path} is not a readable PEM private key`);
      return undefined;
    }
  }
  /** Reports keys nobody read: typos must not pass silently. */
  done(): void {
    for (const k of Object.keys(this.obj)) if (!this.seen.has(k)) this.problem(k, 'unknown key');
  }
}

function loadListen(s: Section): ListenConfig {
  const host = s.string('host', '0.0.0.0');
  const port = s.int('port', 8443, 0, 65535);
  let tls: ListenConfig['tls'];
  if (s.has('tls')) {
    const t = s.section('tls');
    const cert = t.certificates('cert_file', true);
    const key = t.privateKey('key_file', true);
    const clientCa = t.certificates('client_ca_file');
    const minVersion = t.oneOf('min_version', ['TLSv1.2', 'TLSv1.3'] as const, 'TLSv1.2');
    const ciphers = t.string('ciphers', FAPI_TLS12_CIPHERS);
    t.done();
    if (cert && key && !keyMatches(cert, key)) t.problem('key_file', `${key.path} is not the private key of cert_file's certificate`);
    else if (cert && key) tls = { cert, key, minVersion, ciphers, ...(clientCa ? { clientCa } : {}) };
  } else s.raw('tls');
  const requestTimeoutMs = s.int('request_timeout_ms', 300000, 0, 3600000);
  const out: ListenConfig = {
    host,
    port,
    ...(tls ? { tls } : {}),
    maxHeaderBytes: s.int('max_header_bytes', 32768, 1024, 1048576),
    maxHeaders: s.int('max_headers', 100, 1, 10000),
    maxConnections: s.int('max_connections', 1024, 1, 1000000),
    keepAliveTimeoutMs: s.int('keep_alive_timeout_ms', 65000, 0, 3600000),
    requestTimeoutMs,
    // Default 10 s, or the request timeout when that is shorter (Node refuses a longer one).
    headersTimeoutMs: s.int('headers_timeout_ms', Math.min(10000, requestTimeoutMs || 10000), 1, 3600000),
    sendTimeoutMs: s.int('send_timeout_ms', 30000, 1, 3600000),
  };
  if (out.requestTimeoutMs !== 0 && out.headersTimeoutMs > out.requestTimeoutMs) {
    s.problem('headers_timeout_ms', `must not exceed request_timeout_ms (${out.requestTimeoutMs})`);
  }
  s.done();
  return out;
}

/** Whether the key is the private half of the file's first certificate (what TLS presents). */
function keyMatches(cert: LoadedFile, key: LoadedFile): boolean {
  const first = pemCertificateBlocks(cert.contents)[0];
  return first !== undefined && new X509Certificate(first).checkPrivateKey(createPrivateKey(key.contents));
}

function loadClientCertificate(s: Section): ClientCertificateConfig {
  const source = s.oneOf('source', ['tls', 'header'] as const, 'tls');
  const presetName = s.string('preset');
  const preset = presetName === undefined ? undefined : PRESETS[presetName];
  if (presetName !== undefined && !preset) {
    s.problem('preset', `unknown preset "${presetName}" (known: ${Object.keys(PRESETS).join(', ')})`);
  }
  const header = s.headerName('header', preset?.header ?? 'x-wso2-client-certificate');
  const format = s.oneOf('format', FORMATS, preset?.format ?? 'pem');
  const encoded = s.bool('client_certificate_encode', preset?.encoded ?? true);
  const chainHeader = s.headerName('chain_header') ?? preset?.chainHeader;
  const xfccElement = s.oneOf('xfcc_element', ['first', 'last'] as const, 'last');
  const xfccMaxElements = s.int('xfcc_max_elements', 1, 1, 64);
  const verifyName = s.headerName('verify_header') ?? preset?.verifyHeader?.name;
  const verifySuccess = s.strings('verify_header_value', preset?.verifyHeader?.success ?? ['SUCCESS']);
  const trustedProxies = s.strings('trusted_proxies', []);
  trustedProxies.forEach((cidr, i) => {
    if (!isCidr(cidr)) s.problem(`trusted_proxies[${i}]`, `"${cidr}" is not an IP address or CIDR`);
  });
  if (source === 'header' && trustedProxies.length === 0) {
    s.problem('trusted_proxies', 'is required when source is header (the header is only honoured from these peers)');
  }
  const untrustedHeader = s.oneOf('untrusted_header', ['ignore', 'reject'] as const, 'ignore');
  const maxHeaderBytes = s.int('max_header_bytes', 16384, 256, 1048576);
  const cacheSize = s.int('cache_size', 10000, 0, 10000000);
  const v = s.section('verify');
  const ca = v.certificates('ca_file');
  const verify = {
    ...(ca ? { ca } : {}),
    checkValidity: v.bool('check_validity', true),
    requireClientAuthEku: v.bool('require_client_auth_eku', false),
  };
  if (source === 'tls' && ca) v.problem('ca_file', 'applies to source: header; with source: tls set listen.tls.client_ca_file');
  if (source === 'tls' && verify.requireClientAuthEku) v.problem('require_client_auth_eku', 'applies to source: header only');
  v.done();
  s.done();
  return {
    source,
    ...(presetName !== undefined ? { preset: presetName } : {}),
    header,
    format,
    encoded,
    ...(chainHeader ? { chainHeader } : {}),
    xfccElement,
    xfccMaxElements,
    ...(verifyName ? { verifyHeader: { name: verifyName, success: verifySuccess } } : {}),
    trustedProxies,
    untrustedHeader,
    maxHeaderBytes,
    cacheSize,
    verify,
  };
}

export function isCidr(value: string): boolean {
  const [addr, bits, extra] = value.split('/');
  if (addr === undefined || extra !== undefined) return false;
  const family = isIP(addr);
  if (family === 0) return false;
  if (bits === undefined) return true;
  if (!/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}

function loadAuthorizationServer(s: Section, validation: TokenValidationMode): AuthorizationServerConfig {
  const issuer = s.url('issuer', true) ?? '';
  const needsIntrospection = validation !== 'jwt';
  const introspectionEndpoint = s.url('introspection_endpoint', needsIntrospection);
  const clientAuthMethod = s.oneOf('client_auth_method', CLIENT_AUTH, 'client_secret_basic');
  const clientId = needsIntrospection ? s.required('client_id') : s.string('client_id');
  const clientSecret = s.string('client_secret');
  if (needsIntrospection && clientAuthMethod.startsWith('client_secret') && !clientSecret) {
    s.problem('client_secret', `is required for ${clientAuthMethod}`);
  }
  const privateKey = s.privateKey('private_key_file', needsIntrospection && clientAuthMethod === 'private_key_jwt');
  const signingAlgorithm = s.string('signing_algorithm');
  if (signingAlgorithm !== undefined && !JWS_ALGORITHMS.includes(signingAlgorithm)) {
    s.problem('signing_algorithm', `"${signingAlgorithm}" is not a JWS algorithm for private_key_jwt (one of ${JWS_ALGORITHMS.join(', ')})`);
  } else if (privateKey) {
    const usable = algorithmsFor(createPrivateKey(privateKey.contents));
    if (usable.length === 0) s.problem('private_key_file', `${privateKey.path}: unsupported key type for private_key_jwt (RSA, EC P-256/384/521 or Ed25519)`);
    else if (signingAlgorithm !== undefined && !usable.includes(signingAlgorithm)) {
      s.problem('signing_algorithm', `"${signingAlgorithm}" cannot sign with this key (one of ${usable.join(', ')})`);
    }
  }
  const assertionAudience = s.string('assertion_audience', issuer);
  const needsTlsClient = needsIntrospection && clientAuthMethod === 'tls_client_auth';
  const clientCert = s.certificates('client_cert_file', needsTlsClient);
  const clientKey = s.privateKey('client_key_file', needsTlsClient);
  if (clientCert && clientKey && !keyMatches(clientCert, clientKey)) s.problem('client_key_file', `${clientKey.path} is not the private key of client_cert_file's certificate`);
  const ca = s.certificates('ca_file');
  const signedIntrospection = s.bool('signed_introspection', false);
  const jwksUri = s.url('jwks_uri', validation !== 'introspection' || signedIntrospection);
  const audience = s.string('audience');
  if (validation !== 'introspection' && !audience) s.problem('audience', 'is required when token_validation is jwt or auto');
  const allowedAlgorithms = s.strings('allowed_algorithms', ['PS256', 'ES256', 'EdDSA']);
  allowedAlgorithms.forEach((alg, i) => {
    if (alg === 'none' || alg.startsWith('HS')) s.problem(`allowed_algorithms[${i}]`, `"${alg}" is not allowed: access tokens must be signed with an asymmetric key`);
  });
  const c = s.section('cache');
  const cache = {
    maxEntries: c.int('max_entries', 100000, 0, 100000000),
    maxTtlSeconds: c.int('max_ttl_seconds', 60, 0, 86400),
    negativeTtlSeconds: c.int('negative_ttl_seconds', 0, 0, 3600),
  };
  c.done();
  const out: AuthorizationServerConfig = {
    issuer,
    ...(introspectionEndpoint ? { introspectionEndpoint } : {}),
    ...(clientId ? { clientId } : {}),
    ...(clientSecret ? { clientSecret } : {}),
    clientAuthMethod,
    ...(privateKey ? { privateKey } : {}),
    ...(signingAlgorithm ? { signingAlgorithm } : {}),
    assertionAudience,
    ...(clientCert ? { clientCert } : {}),
    ...(clientKey ? { clientKey } : {}),
    ...(ca ? { ca } : {}),
    timeoutMs: s.int('timeout_ms', 2000, 1, 60000),
    clockSkewSeconds: s.int('clock_skew_seconds', 30, 0, 600),
    maxConcurrentRequests: s.int('max_concurrent_requests', 64, 1, 10000),
    retryAfterSeconds: s.int('retry_after_seconds', 5, 0, 3600),
    signedIntrospection,
    requireTokenType: s.bool('require_token_type', false),
    ...(jwksUri ? { jwksUri } : {}),
    jwksCooldownSeconds: s.int('jwks_cooldown_seconds', 30, 0, 3600),
    jwksMaxAgeSeconds: s.int('jwks_max_age_seconds', 600, 1, 86400),
    ...(audience ? { audience } : {}),
    allowedAlgorithms,
    cache,
  };
  s.done();
  return out;
}

function loadUpstreams(value: unknown, problems: string[], baseDir: string): Map<string, UpstreamConfig> {
  const out = new Map<string, UpstreamConfig>();
  const s = Section.of(value, 'upstreams', problems, baseDir);
  if (value === undefined || value === null) {
    problems.push('upstreams: is required');
    return out;
  }
  for (const [name, raw] of Object.entries(typeof value === 'object' && !Array.isArray(value) ? value : {})) {
    s.raw(name);
    const path = `upstreams.${name}`;
    const u = typeof raw === 'string' ? Section.of({ url: raw }, path, problems, baseDir) : Section.of(raw, path, problems, baseDir);
    const url = u.url('url', true);
    let origin: string | undefined;
    if (url) {
      const parsed = new URL(url);
      if ((parsed.pathname !== '/' && parsed.pathname !== '') || parsed.search || parsed.username) {
        u.problem('url', 'must be an origin (scheme://host:port) without path, query or credentials');
      } else origin = parsed.origin;
    }
    const upstream = {
      name,
      url: origin ?? '',
      timeoutMs: u.int('timeout_ms', 30000, 1, 3600000),
      connections: u.int('connections', 128, 1, 100000),
      maxPending: u.int('max_pending', 1024, 0, 1000000),
    };
    u.done();
    if (origin) out.set(name, upstream);
  }
  s.done();
  return out;
}

function loadRoutes(value: unknown, upstreams: ReadonlyMap<string, UpstreamConfig>, problems: string[], baseDir: string): RouteConfig[] {
  if (!Array.isArray(value) || value.length === 0) {
    problems.push('routes: must be a non-empty list');
    return [];
  }
  const names = new Set<string>();
  const prefixes = new Set<string>();
  return value.map((raw: unknown, i): RouteConfig => {
    const r = Section.of(raw, `routes[${i}]`, problems, baseDir);
    const name = r.required('name');
    if (name && !ROUTE_NAME.test(name)) r.problem('name', 'may contain only letters, digits, ".", "_" and "-"');
    if (name && names.has(name)) r.problem('name', `duplicate route name "${name}"`);
    names.add(name);
    const rawPrefix = r.required('path_prefix');
    let pathPrefix = rawPrefix;
    if (rawPrefix) {
      const normalized = rawPrefix.startsWith('/') ? normalizePrefix(rawPrefix) : undefined;
      if (normalized === undefined) r.problem('path_prefix', `"${rawPrefix}" must be an absolute, normalized path without percent-encoding`);
      else pathPrefix = normalized;
    }
    const methods = r.strings('methods', HTTP_METHODS).map((m) => m.toUpperCase());
    methods.forEach((m, j) => {
      if (!/^[A-Z]+$/.test(m)) r.problem(`methods[${j}]`, `"${m}" is not an HTTP method`);
    });
    const upstream = r.required('upstream');
    if (upstream && !upstreams.has(upstream)) r.problem('upstream', `unknown upstream "${upstream}"`);
    const auth = r.oneOf('auth', AUTH_MODES, 'certificate_bound_token');
    const scopes = r.strings('scopes', []);
    if (auth !== 'certificate_bound_token' && scopes.length > 0) r.problem('scopes', `has no effect with auth: ${auth}`);
    const forwardCertificateHeader = r.headerName('forward_certificate_header') ?? (auth === 'mtls' ? 'x-client-cert' : undefined);
    const route: RouteConfig = {
      name,
      pathPrefix,
      methods: [...new Set(methods)],
      upstream,
      auth,
      scopes,
      // At a token endpoint Authorization is the client's own credential for the server.
      forwardAuthorization: r.bool('forward_authorization', auth === 'mtls'),
      ...(forwardCertificateHeader ? { forwardCertificateHeader } : {}),
      allowDoubleEncoding: r.bool('allow_double_encoding', false),
    };
    const key = pathPrefix;
    if (pathPrefix && prefixes.has(key)) r.problem('path_prefix', `"${pathPrefix}" is already used by another route`);
    prefixes.add(key);
    r.done();
    return route;
  });
}

/** Validates a parsed YAML document. Pure apart from reading the files it references. */
export function buildConfig(document: unknown, opts: { env?: Env; baseDir?: string; source?: string } = {}): Config {
  const problems: string[] = [];
  const baseDir = opts.baseDir ?? process.cwd();
  const tree = interpolateTree(document, opts.env ?? process.env, '', problems);
  const root = Section.of(tree, '', problems, baseDir);
  const listen = loadListen(root.section('listen'));
  const a = root.section('admin');
  const admin = { host: a.string('host', '127.0.0.1'), port: a.int('port', 9091, 0, 65535) };
  a.done();
  const clientCertificate = loadClientCertificate(root.section('client_certificate'));
  const tokenValidation = root.oneOf('token_validation', VALIDATION, 'introspection');
  const upstreams = loadUpstreams(root.raw('upstreams'), problems, baseDir);
  const routes = loadRoutes(root.raw('routes'), upstreams, problems, baseDir);
  const needsAs = routes.some((r) => r.auth === 'certificate_bound_token');
  let authorizationServer: AuthorizationServerConfig | undefined;
  if (root.has('authorization_server')) authorizationServer = loadAuthorizationServer(root.section('authorization_server'), tokenValidation);
  else if (needsAs) problems.push('authorization_server: is required by routes with auth: certificate_bound_token');
  const ih = root.section('identity_headers');
  const identityHeaders: IdentityHeadersConfig = {
    clientId: ih.headerName('client_id', 'x-certbound-client-id'),
    subject: ih.headerName('subject', 'x-certbound-subject'),
    scope: ih.headerName('scope', 'x-certbound-scope'),
    thumbprint: ih.headerName('certificate_thumbprint', 'x-certbound-certificate-thumbprint'),
  };
  ih.done();
  const realm = root.string('realm', 'certbound');
  // It is written into every WWW-Authenticate as a quoted string (RFC 9110 §5.6.4).
  if (!/^[\x20\x21\x23-\x5b\x5d-\x7e]*$/.test(realm)) root.problem('realm', 'must be printable ASCII without " or \\');
  const l = root.section('logging');
  const logging = { level: l.oneOf('level', LOG_LEVELS, 'info'), flushIntervalMs: l.int('flush_interval_ms', 100, 0, 10000) };
  l.done();
  const sd = root.section('shutdown');
  const shutdown = { gracePeriodSeconds: sd.int('grace_period_seconds', 20, 0, 3600) };
  sd.done();
  const rl = root.section('reload');
  const reload = { watch: rl.bool('watch', true), debounceMs: rl.int('debounce_ms', 250, 0, 60000) };
  rl.done();
  root.done();
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze({
    source: opts.source ?? '<inline>',
    listen,
    admin,
    clientCertificate,
    tokenValidation,
    ...(authorizationServer ? { authorizationServer } : {}),
    upstreams,
    routes,
    identityHeaders,
    realm,
    logging,
    shutdown,
    reload,
  });
}

/** Reads, parses and validates gateway.yaml; relative file paths resolve against its directory. */
export function loadConfig(path: string, env: Env = process.env): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError([`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((e) => `${path}: ${e.message.split('\n')[0] ?? 'YAML error'}`));
  }
  return buildConfig(doc.toJS({ maxAliasCount: 50 }), { env, baseDir: dirname(resolve(path)), source: resolve(path) });
}
