import { Type, type Static, type TSchema } from '@sinclair/typebox';

/**
 * gateway.yaml, defined once. From this one definition come the TypeScript types (`Static`,
 * camel-cased in ./types.ts), the defaults and the validation (ajv, in ./load.ts), and the
 * published JSON Schema (schema/gateway.schema.json, `npm run schema`). A key with a `default`
 * is optional in the file and always present after loading. Keys whose default depends on
 * another key have none here: the compile step (./resolve.ts) settles them, as their
 * description says. `errorMessage` replaces ajv's wording for a pattern that failed.
 */

/** HTTP methods a route allows by default; metrics label any other method `OTHER`. */
export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;
export const CERTIFICATE_FORMATS = ['pem', 'der-base64', 'rfc9440', 'xfcc', 'traefik', 'aws-alb'] as const;
export const AUTH_MODES = ['certificate_bound_token', 'sender_constrained_token', 'dpop_bound_token', 'mtls', 'none'] as const;
/** The route kinds that take an access token. */
export const TOKEN_AUTH_MODES = ['certificate_bound_token', 'sender_constrained_token', 'dpop_bound_token'] as const;
/** The route kinds that take a DPoP proof (and so need a public URL for its htu). */
export const DPOP_AUTH_MODES = ['sender_constrained_token', 'dpop_bound_token'] as const;
export const DPOP_NONCE_MODES = ['off', 'required'] as const;
export const CLIENT_AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'tls_client_auth'] as const;
export const TOKEN_VALIDATION_MODES = ['introspection', 'jwt', 'auto'] as const;
export const REVOCATION_MODES = ['off', 'soft_fail', 'hard_fail'] as const;
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export const TLS_VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;
/** The asymmetric JWS algorithms (RFC 7518, RFC 8037) a private_key_jwt assertion may use. */
export const JWS_ALGORITHMS = ['PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

/** ETSI TS 119 495 §5.1: the PSD2 roles a QWAC's PSD2QcType statement may carry. */
export const PSD2_ROLES = ['PSP_AS', 'PSP_PI', 'PSP_AI', 'PSP_IC'] as const;
export type Psd2Role = (typeof PSD2_ROLES)[number];

/** FAPI 1.0 Part 2 §8.5: the only TLS 1.2 suites allowed. */
export const FAPI_TLS12_CIPHERS = [
  'DHE-RSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'DHE-RSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
].join(':');

const oneOf = <T extends readonly string[]>(values: T, description: string, fallback?: T[number]) =>
  Type.Unsafe<T[number]>({ type: 'string', enum: [...values], description, ...(fallback !== undefined ? { default: fallback } : {}) });
const int = (minimum: number, maximum: number, fallback: number, description: string) =>
  Type.Integer({ minimum, maximum, default: fallback, description });
const bool = (fallback: boolean, description: string) => Type.Boolean({ default: fallback, description });
const text = (description: string, fallback?: string) => Type.String({ minLength: 1, description, ...(fallback !== undefined ? { default: fallback } : {}) });
const file = (description: string) => Type.String({ minLength: 1, description: `${description} Relative paths resolve against gateway.yaml's directory.` });
/** http(s), or a ${VAR} the loader expands before it validates (the published file is read before). */
const url = (description: string) => Type.String({ minLength: 1, pattern: '^([Hh][Tt][Tt][Pp][Ss]?://|\\$\\{)', errorMessage: '"{value}" is not an http(s) URL', description });
/** An RFC 9110 token; also checked with http.validateHeaderName when compiled. */
const headerName = (description: string, fallback?: string) =>
  Type.String({ pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", errorMessage: '"{value}" is not a valid header name', description, ...(fallback !== undefined ? { default: fallback } : {}) });
const section = <T extends Parameters<typeof Type.Object>[0]>(properties: T, description: string) =>
  Type.Object(properties, { additionalProperties: false, default: {}, description });
const strings = (description: string, fallback?: readonly string[]) =>
  Type.Array(Type.String({ minLength: 1 }), { description, ...(fallback !== undefined ? { default: [...fallback] } : {}) });

const Tls = Type.Object(
  {
    cert_file: file('Server certificate (PEM, leaf first, then intermediates).'),
    key_file: file("The server certificate's private key (PEM)."),
    client_ca_file: Type.Optional(file('CA bundle (PEM) client certificates must chain to. Without it any self-signed certificate can be presented (binding still holds).')),
    min_version: oneOf(TLS_VERSIONS, 'Lowest TLS version.', 'TLSv1.2'),
    ciphers: text('OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are not configurable). Default: the four suites FAPI 1.0 Part 2 §8.5 allows.', FAPI_TLS12_CIPHERS),
  },
  { additionalProperties: false, description: 'TLS with client certificates. Without it certbound listens on plain HTTP (behind a load balancer: client_certificate.source: header).' },
);

/** An origin: https://host[:port], nothing after it (resolve.ts checks the rest). */
const publicUrl = (description: string) =>
  Type.String({ pattern: '^([Hh][Tt][Tt][Pp][Ss]://[^/?#]+/?|\\$\\{.*)$', errorMessage: '"{value}" is not an origin (https://host[:port], no path, query or credentials)', description });

const Listen = section(
  {
    host: text('Address to bind (restart to change).', '0.0.0.0'),
    port: int(0, 65535, 8443, 'TCP port; 0 picks a free one (restart to change).'),
    tls: Type.Optional(Tls),
    max_header_bytes: int(1024, 1048576, 32768, 'Largest request header block, in bytes; larger → 431 (restart to change).'),
    max_headers: int(1, 10000, 100, 'Most request header lines; more → 431, nothing forwarded.'),
    max_connections: int(1, 1000000, 1024, 'Open client connections at most; beyond, a new one is closed at once and counted.'),
    keep_alive_timeout_ms: int(0, 3600000, 65000, 'Idle keep-alive connections are closed after this long.'),
    headers_timeout_ms: Type.Optional(Type.Integer({ minimum: 1, maximum: 3600000, description: 'The request headers must arrive within this long (slowloris); also the TLS handshake limit (restart to change). Default 10000, or request_timeout_ms when that is shorter.' })),
    request_timeout_ms: int(0, 3600000, 300000, 'A whole request (headers and body) must arrive within this long; 0: no limit.'),
    send_timeout_ms: int(1, 3600000, 30000, 'A client that reads nothing of what certbound has to send for this long is cut.'),
    public_url: Type.Optional(publicUrl("The external origin clients call (https://host[:port], no path). A DPoP proof's htu is checked against it plus the request's normalized path, never against Host. Required by routes with auth: dpop_bound_token or sender_constrained_token that set no public_url of their own.")),
  },
  'The traffic listener (TPPs connect here).',
);

const Admin = section(
  {
    host: text('Address of the admin listener (/metrics, /healthz, /readyz).', '127.0.0.1'),
    port: int(0, 65535, 9091, 'Admin port; 0 picks a free one.'),
    revocation_secret_file: Type.Optional(file('Enables POST /revocations on this listener: callers must send Authorization: Bearer <its contents> (at least 32 bytes; trailing whitespace trimmed). Default: none, and /revocations answers 404.')),
  },
  'Plain-HTTP listener for Prometheus, health checks and revocations. Keep it off the public network.',
);

const SharedState = section(
  {
    redis_url: Type.Optional(Type.String({
      pattern: '^([Rr][Ee][Dd][Ii][Ss][Ss]?://|\\$\\{)', errorMessage: '"{value}" is not a redis:// or rediss:// URL',
      description: 'Redis or Valkey shared by the replicas: second-level token cache, revocations, DPoP replays (restart to change). Default: none: each process keeps its own state.',
    })),
    key_prefix: text('Prefix of every key and channel certbound uses.', 'certbound:'),
    timeout_ms: int(1, 10000, 50, 'A Redis call slower than this is treated as a miss; a request waits at most twice this on Redis in total.'),
    secret_file: Type.Optional(file('Required with redis_url: at least 32 bytes (trailing whitespace trimmed), the same on every replica. Keys are HMACs of tokens under it, values AES-GCM sealed with keys derived from it and the token.')),
    ca_file: Type.Optional(file('rediss://: CA bundle (PEM) the server certificate must chain to. Default: the system store.')),
  },
  'State shared across replicas. Redis down, slow or answering garbage never fails a request: certbound serves from its local cache and the authorization server.',
);

/** An http(s) URL, or "" for none (the contract: `url: ""` means the certificate's own AIA URL). */
const optionalUrl = (description: string) =>
  Type.Optional(Type.String({ pattern: '^(|[Hh][Tt][Tt][Pp][Ss]?://.*|\\$\\{.*)$', errorMessage: '"{value}" is not an http(s) URL', description }));

const Revocation = section(
  {
    mode: oneOf(REVOCATION_MODES, 'off: no check. soft_fail: a revoked certificate is refused (401); when no source can answer the request passes, logged at warn and counted. hard_fail: revoked → 401, no answer → 503 with Retry-After, nothing forwarded.', 'off'),
    issuer_file: Type.Optional(file('Issuer certificates (PEM) of the TPP certificates, for the OCSP CertID and to verify OCSP responses and CRLs. Default: listen.tls.client_ca_file, else client_certificate.verify.ca_file. Required unless mode is off.')),
    ocsp: section(
      {
        enabled: bool(true, 'Ask OCSP responders (RFC 6960).'),
        url: optionalUrl("The responder to ask instead of the certificate's AIA OCSP URL. Default: the certificate's own (absent or \"\")."),
        timeout_ms: int(1, 60000, 2000, 'Each OCSP exchange is aborted after this long (then: no answer from OCSP).'),
        nonce: bool(false, 'Send an RFC 8954 nonce and require the response to echo it. RFC 5019 responders pre-sign their answers and ignore it.'),
        max_cache_seconds: int(1, 604800, 3600, "A verified answer is kept until min(nextUpdate, now + this): how long a revocation may go unnoticed. It is asked again in the background before then."),
      },
      'OCSP: the status of one certificate, signed by its CA or a responder the CA delegated to.',
    ),
    crl: section(
      {
        enabled: bool(true, 'Use CRLs (RFC 5280).'),
        urls: Type.Array(Type.String({ pattern: '^([Hh][Tt][Tt][Pp][Ss]?://|\\$\\{)', errorMessage: '"{value}" is not an http(s) URL' }), { default: [], description: "CRLs fetched in addition to the certificates' own distribution points." }),
        files: strings('Local CRL files (PEM or DER), read again on every reload.', []),
        use_distribution_points: bool(true, "Fetch the CRL named by a certificate's CRL distribution points extension."),
        refresh_seconds: int(1, 604800, 3600, 'Fetched CRLs are fetched again after this long, and always before their nextUpdate. A failed refresh keeps the last good CRL until its nextUpdate.'),
        timeout_ms: int(1, 300000, 10000, 'Each CRL download is aborted after this long.'),
      },
      'CRLs: lists of revoked serial numbers, signed by the issuer.',
    ),
    order: Type.Array(oneOf(['ocsp', 'crl'] as const, 'A source.'), { minItems: 1, maxItems: 2, uniqueItems: true, default: ['ocsp', 'crl'], description: 'Which source is asked first; a definite answer (good or revoked) from one is final.' }),
    clock_skew_seconds: int(0, 3600, 60, 'How far thisUpdate may lie in the future.'),
    cache_entries: int(1, 10000000, 100000, 'Certificates whose status is kept in memory (LRU), by thumbprint.'),
    retry_after_seconds: int(0, 3600, 5, 'hard_fail: Retry-After sent with the 503 when no source can answer.'),
  },
  "Revocation of TPP certificates (PSD2 RTS Art. 34): OCSP and CRLs, on every route that uses a client certificate, whether from the TLS handshake or a header.",
);

const ClientCertificate = section(
  {
    source: oneOf(['tls', 'header'] as const, "tls: certbound's own handshake (listen.tls). header: a header set by a load balancer that terminated mutual TLS (needs trusted_proxies).", 'tls'),
    preset: Type.Optional(Type.String({ minLength: 1, description: 'Default: none. A load-balancer preset setting header, format, client_certificate_encode, chain_header and verify_header together (docs/load-balancers.md). Keys set here override it.' })),
    header: Type.Optional(headerName('The header carrying the certificate (source: header); always stripped from requests. Default: the preset\'s, else x-wso2-client-certificate.')),
    format: Type.Optional(oneOf(CERTIFICATE_FORMATS, "How that header is encoded. Default: the preset's, else pem.")),
    client_certificate_encode: Type.Optional(Type.Boolean({ description: "The PEM in the header is percent-encoded (decoded as a URI component: '+' stays '+'). Default: the preset's, else true." })),
    chain_header: Type.Optional(headerName('Header carrying the rest of the chain (RFC 9440 client-cert-chain). Default: the preset\'s, else none.')),
    xfcc_max_elements: int(1, 64, 1, 'format xfcc: how many elements a header may hold; 1 accepts only what an edge Envoy with SANITIZE_SET sends.'),
    xfcc_element: oneOf(['first', 'last'] as const, 'format xfcc: which element to use when several are allowed.', 'last'),
    verify_header: Type.Optional(headerName("A header in which the load balancer says whether it verified the certificate (e.g. ssl-client-verify). Default: the preset's, else none.")),
    verify_header_value: Type.Optional(strings("Values of verify_header meaning success. Default: the preset's, else [SUCCESS].")),
    trusted_proxies: strings('Peers (IP or CIDR) whose certificate header is honoured. Required with source: header.', []),
    untrusted_header: oneOf(['ignore', 'reject'] as const, 'A certificate header from an untrusted peer: ignore (logged, treated as no certificate) or reject (400).', 'ignore'),
    max_header_bytes: int(256, 1048576, 16384, 'Largest certificate header accepted, in bytes.'),
    cache_size: int(0, 10000000, 10000, 'Parsed header certificates kept in memory, by header value; 0 disables.'),
    revocation: Revocation,
    verify: section(
      {
        ca_file: Type.Optional(file('source: header: CA bundle (PEM) the certificate must chain to. Default: none (trust the load balancer).')),
        check_validity: bool(true, 'Refuse certificates outside notBefore..notAfter.'),
        require_client_auth_eku: bool(false, 'source: header: require the clientAuth extended key usage.'),
      },
      'Extra checks on the certificate.',
    ),
  },
  "Where the TPP's certificate comes from, and how it is checked.",
);

const TokenCache = section(
  {
    max_entries: int(0, 100000000, 100000, 'Entries at most (LRU); 0 disables the cache.'),
    max_ttl_seconds: int(0, 86400, 60, "An active result is kept at most this long, never past the token's exp: the bound on revocation latency."),
    negative_ttl_seconds: int(0, 3600, 0, 'Inactive results are kept this long; 0 does not cache them.'),
  },
  'Validation results, cached by token hash.',
);

const AuthorizationServer = Type.Object(
  {
    issuer: url('Expected issuer (iss of JWTs and introspection responses, compared exactly).'),
    introspection_endpoint: Type.Optional(url('RFC 7662 endpoint. Required unless token_validation is jwt.')),
    client_auth_method: oneOf(CLIENT_AUTH_METHODS, 'How certbound authenticates to the introspection endpoint.', 'client_secret_basic'),
    client_id: Type.Optional(text("certbound's client id at the authorization server. Required for introspection.")),
    client_secret: Type.Optional(text('Required for client_secret_basic and client_secret_post: the secret. Expand it from the environment: ${VAR}.')),
    private_key_file: Type.Optional(file('Required for private_key_jwt: the signing key (PKCS#8 PEM).')),
    signing_algorithm: Type.Optional(oneOf(JWS_ALGORITHMS, 'private_key_jwt: the JWS algorithm; the key must be able to sign with it. Default: the first the key can sign with.')),
    assertion_audience: Type.Optional(text("private_key_jwt: the assertion's aud. Default: issuer.")),
    client_cert_file: Type.Optional(file("Required for tls_client_auth: certbound's client certificate towards the server.")),
    client_key_file: Type.Optional(file('Required for tls_client_auth: the private key of client_cert_file.')),
    ca_file: Type.Optional(file("Extra CA bundle (PEM) trusted for the server's TLS certificate. Default: the system store.")),
    signed_introspection: bool(false, 'RFC 9701: ask for application/token-introspection+jwt and verify it (needs jwks_uri).'),
    require_token_type: bool(false, 'Refuse an introspection answer without token_type: Bearer.'),
    jwks_uri: Type.Optional(url("The server's JWKS. Required when token_validation is jwt or auto, or with signed_introspection.")),
    jwks_cooldown_seconds: int(0, 3600, 30, 'After a JWKS fetch, the least time before the next.'),
    jwks_max_age_seconds: int(1, 86400, 600, 'Keys older than this are fetched again on the next token that needs them.'),
    audience: Type.Optional(text("The resource's identifier JWT access tokens must carry in aud. Required for jwt and auto.")),
    allowed_algorithms: strings('JWS algorithms accepted for JWTs; none and HS* are refused.', ['PS256', 'ES256', 'EdDSA']),
    timeout_ms: int(1, 60000, 2000, 'Each call to the server (introspection, JWKS) is aborted after this long.'),
    clock_skew_seconds: int(0, 600, 30, 'Tolerance for exp, nbf and iat.'),
    max_concurrent_requests: int(1, 10000, 64, 'Concurrent calls to the server at most.'),
    retry_after_seconds: int(0, 3600, 5, 'Retry-After sent with 503 when the server cannot be reached.'),
    cache: TokenCache,
  },
  { additionalProperties: false, description: 'The OAuth server that issued the tokens. Required when a route uses auth: certificate_bound_token.' },
);

const UpstreamObject = Type.Object(
  {
    url: url('Origin only: scheme://host:port, no path, query or credentials.'),
    timeout_ms: int(1, 3600000, 30000, "Allowed for the response headers (from dispatch), a pause in the request body, or in the response body or the client's reading of it. Connecting: at most 10000."),
    connections: int(1, 100000, 128, 'Pooled connections at most.'),
    max_pending: int(0, 1000000, 1024, 'Requests that may wait for a pooled connection; beyond connections + max_pending, 503 with Retry-After: 1.'),
    tunnel_idle_timeout_ms: int(1, 86400000, 300000, 'An upgraded (WebSocket) connection on which no byte moves either way for this long is closed.'),
  },
  { additionalProperties: false },
);
/** `name: URL` is short for `name: { url: URL }`. */
const Upstream = Type.Union([url('Origin (short form of { url: … }).'), UpstreamObject], { description: 'An upstream: its origin, or the origin with its limits.' });

const Route = Type.Object(
  {
    name: Type.String({ pattern: '^[A-Za-z0-9_.-]+$', errorMessage: 'may contain only letters, digits, ".", "_" and "-"', description: 'Used in metrics and logs. Unique.' }),
    path_prefix: Type.String({ minLength: 1, description: 'Absolute, normalized, no percent-encoding; matched on segment boundaries, longest first. Unique.' }),
    methods: Type.Array(Type.String({ pattern: '^[A-Za-z]+$', errorMessage: '"{value}" is not an HTTP method' }), { default: [...HTTP_METHODS], description: 'Allowed methods; others → 405.' }),
    upstream: Type.String({ minLength: 1, description: 'A name from upstreams.' }),
    auth: oneOf(AUTH_MODES, 'certificate_bound_token: a Bearer token bound to the client certificate (cnf.x5t#S256); dpop_bound_token: a DPoP token bound to the key of its proof (cnf.jkt, RFC 9449); sender_constrained_token: either of the two; all three with the scopes below. mtls: a client certificate only (token endpoints), forwarded with any DPoP header; none: nothing checked.', 'certificate_bound_token'),
    scopes: strings('Every one must be granted (403 insufficient_scope). Only on routes that take a token.', []),
    public_url: Type.Optional(publicUrl('This route\'s external origin, for DPoP htu. Default: listen.public_url.')),
    forward_authorization: Type.Optional(Type.Boolean({ description: 'Pass the Authorization and DPoP headers upstream. Default true for mtls routes (the client\'s credential for the token endpoint; DPoP is always forwarded there), false otherwise.' })),
    forward_certificate_header: Type.Optional(headerName('Header the certificate is forwarded in (URL-encoded PEM); always removed from the client\'s request first. Default x-client-cert for mtls routes, none otherwise.')),
    allow_double_encoding: bool(false, 'Accept %25 followed by two hex digits (an octet encoded twice) in the path.'),
    psd2_roles: Type.Array(oneOf(PSD2_ROLES, 'A PSD2 role (ETSI TS 119 495).'), { uniqueItems: true, default: [], description: "The client certificate's PSD2 statement must carry at least one of these (403 insufficient_role, checked before the token). Default []: no check. Not with auth: none." }),
  },
  { additionalProperties: false },
);

const Dpop = section(
  {
    algorithms: Type.Array(Type.String({ minLength: 1 }), {
      minItems: 1, uniqueItems: true, default: ['ES256', 'PS256', 'EdDSA'],
      description: 'JWS algorithms a proof may be signed with, in the order the algs challenge lists them (FAPI 2.0 §5.4: PS256, ES256, EdDSA). none and symmetric algorithms are refused.',
    }),
    iat_leeway_seconds: int(1, 3600, 60, "A proof whose iat is further than this from now is refused; its jti is remembered this long after its iat."),
    nonce: oneOf(DPOP_NONCE_MODES, 'required: a proof must carry a nonce certbound issued (401 use_dpop_nonce with a DPoP-Nonce header otherwise; RFC 9449 §9).', 'off'),
    nonce_lifetime_seconds: int(10, 86400, 300, 'A nonce is accepted this long after it was issued; a fresh one rides on successful responses once half of it has passed.'),
    nonce_secret: Type.Optional(Type.String({ minLength: 1, description: 'At least 32 bytes; nonces are an HMAC over a time window keyed by it, so every replica given the same secret accepts the same nonces. Expand it from the environment: ${VAR}. Default: generated at start (this process only).' })),
    replay_cache_entries: int(1, 100000000, 100000, "Proofs (by key thumbprint and jti) remembered to refuse replays, at most (LRU)."),
  },
  'DPoP (RFC 9449): proofs of possession for dpop_bound_token and sender_constrained_token routes.',
);

const IdentityHeaders = section(
  {
    client_id: headerName("Carries the token's client_id upstream.", 'x-certbound-client-id'),
    subject: headerName("Carries the token's sub upstream.", 'x-certbound-subject'),
    scope: headerName("Carries the token's scopes upstream.", 'x-certbound-scope'),
    certificate_thumbprint: headerName("Carries the certificate's x5t#S256 upstream.", 'x-certbound-certificate-thumbprint'),
    organization_id: headerName("Carries the certificate's organizationIdentifier (2.5.4.97, e.g. PSDGB-FCA-123456) upstream, when it has one.", 'x-certbound-organization-id'),
    psd2_roles: headerName("Carries the certificate's PSD2 roles upstream (space-separated names), when it has any.", 'x-certbound-psd2-roles'),
    dpop_jkt: headerName("Carries the JWK thumbprint (RFC 7638) of a DPoP request's key upstream.", 'x-certbound-dpop-jkt'),
  },
  'What certbound tells the upstream about the caller; any client-sent copy is stripped.',
);

export const GatewaySchema = Type.Object(
  {
    listen: Listen,
    admin: Admin,
    client_certificate: ClientCertificate,
    token_validation: oneOf(TOKEN_VALIDATION_MODES, 'introspection (RFC 7662, cached), jwt (RFC 9068, verified locally; needs audience and jwks_uri) or auto (JWTs of our issuer locally, anything else introspected).', 'introspection'),
    authorization_server: Type.Optional(AuthorizationServer),
    upstreams: Type.Record(Type.String({ minLength: 1 }), Upstream, { description: 'Name → upstream origin.' }),
    routes: Type.Array(Route, { minItems: 1, errorMessage: 'must be a non-empty list', description: 'Matched on the normalized path, longest path_prefix first.' }),
    dpop: Dpop,
    shared_state: SharedState,
    identity_headers: IdentityHeaders,
    realm: Type.String({ pattern: '^[\\x20\\x21\\x23-\\x5b\\x5d-\\x7e]*$', errorMessage: 'must be printable ASCII without " or \\', default: 'certbound', description: 'realm of WWW-Authenticate: Bearer realm="…".' }),
    logging: section(
      {
        level: oneOf(LOG_LEVELS, 'JSON log level; info logs one line per request.', 'info'),
        flush_interval_ms: int(0, 10000, 100, 'Lines are written in batches of up to 8 KiB, never later than this after they were logged; 0: every line at once (restart to change).'),
      },
      'JSON log lines on stdout. Tokens, secrets and certificates are never logged.',
    ),
    shutdown: section({ grace_period_seconds: int(0, 3600, 20, 'On SIGTERM, requests in flight may finish for this long.') }, 'Graceful shutdown.'),
    reload: section(
      {
        watch: bool(true, 'Reload when this file or any file it references changes.'),
        debounce_ms: int(0, 60000, 250, 'Changes within this long make one reload.'),
      },
      'Reload on SIGHUP and, with watch, on file changes; an invalid configuration is logged and the running one kept.',
    ),
  },
  {
    additionalProperties: false,
    title: 'certbound gateway.yaml',
    description: 'Configuration of certbound, the certificate-bound token gateway (RFC 8705).',
  },
);

/** gateway.yaml after validation: every key with a default is present. */
export type GatewayDocument = Static<typeof GatewaySchema>;
export type UpstreamDocument = Static<typeof UpstreamObject>;
export type { TSchema };
