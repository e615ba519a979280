/**
 * The validated configuration: plain, frozen data with every default applied and every
 * referenced file already read. `load.ts` produces it; `gateway.ts` compiles it into the
 * runtime objects. Key names mirror gateway.yaml (documented in gateway.yaml and README.md).
 */
export type AuthMode = 'certificate_bound_token' | 'mtls' | 'none';
export type TokenValidationMode = 'introspection' | 'jwt' | 'auto';
export type ClientAuthMethod =
  | 'client_secret_basic'
  | 'client_secret_post'
  | 'private_key_jwt'
  | 'tls_client_auth';
export type CertificateFormat = 'pem' | 'der-base64' | 'rfc9440' | 'xfcc' | 'traefik' | 'aws-alb';
export type TlsVersion = 'TLSv1.2' | 'TLSv1.3';

/** A file referenced by the config, read at load time (reload re-reads it). */
export interface LoadedFile {
  readonly path: string;
  readonly contents: Buffer;
}

export interface TlsListenConfig {
  readonly cert: LoadedFile;
  readonly key: LoadedFile;
  readonly clientCa?: LoadedFile;
  readonly minVersion: TlsVersion;
  /** OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are not configurable here). */
  readonly ciphers: string;
}

export interface ListenConfig {
  readonly host: string;
  readonly port: number;
  readonly tls?: TlsListenConfig;
  readonly maxHeaderBytes: number;
  /** Requests with more header lines are refused with 431. */
  readonly maxHeaders: number;
  /** Beyond this many open connections, new ones are closed at once (and counted). */
  readonly maxConnections: number;
  readonly keepAliveTimeoutMs: number;
  /** Time allowed to receive a request's headers. */
  readonly headersTimeoutMs: number;
  /** Time allowed to receive a whole request, body included; 0: none. */
  readonly requestTimeoutMs: number;
  /** A client that reads nothing of what certbound has to send for this long is cut. */
  readonly sendTimeoutMs: number;
}

export interface AdminConfig {
  readonly host: string;
  readonly port: number;
}

export interface CertificateVerifyConfig {
  readonly ca?: LoadedFile;
  readonly checkValidity: boolean;
  readonly requireClientAuthEku: boolean;
}

export interface ClientCertificateConfig {
  readonly source: 'tls' | 'header';
  readonly preset?: string;
  /** Lower-case header name carrying the certificate. */
  readonly header: string;
  readonly format: CertificateFormat;
  /** `client_certificate_encode`: the value is percent-encoded (never form-decoded). */
  readonly encoded: boolean;
  /** Lower-case header carrying the rest of the chain (RFC 9440 `client-cert-chain`), if any. */
  readonly chainHeader?: string;
  readonly xfccElement: 'first' | 'last';
  /** XFCC values with more elements are refused: 1 accepts only what Envoy's SANITIZE_SET produces. */
  readonly xfccMaxElements: number;
  /** A companion header saying whether the proxy verified the certificate (`ssl-client-verify`). */
  readonly verifyHeader?: { readonly name: string; readonly success: readonly string[] };
  readonly trustedProxies: readonly string[];
  readonly untrustedHeader: 'ignore' | 'reject';
  readonly maxHeaderBytes: number;
  readonly cacheSize: number;
  readonly verify: CertificateVerifyConfig;
}

export interface TokenCacheConfig {
  readonly maxEntries: number;
  readonly maxTtlSeconds: number;
  /** 0: inactive tokens are not cached (the default). */
  readonly negativeTtlSeconds: number;
}

export interface AuthorizationServerConfig {
  readonly issuer: string;
  readonly introspectionEndpoint?: string;
  readonly clientId?: string;
  readonly clientSecret?: string;
  readonly clientAuthMethod: ClientAuthMethod;
  /** private_key_jwt: the signing key (PKCS#8 PEM) and its algorithm. */
  readonly privateKey?: LoadedFile;
  readonly signingAlgorithm?: string;
  /** private_key_jwt: the assertion's `aud` (default: the issuer). */
  readonly assertionAudience: string;
  /** tls_client_auth: certbound's client certificate and key towards the server. */
  readonly clientCert?: LoadedFile;
  readonly clientKey?: LoadedFile;
  /** Extra CA bundle to trust for the server's TLS certificate. */
  readonly ca?: LoadedFile;
  readonly timeoutMs: number;
  readonly clockSkewSeconds: number;
  readonly maxConcurrentRequests: number;
  readonly retryAfterSeconds: number;
  /** Refuse introspection answers without `token_type: Bearer` (closes refresh-token-as-bearer on servers that omit it for refresh tokens). */
  readonly requireTokenType: boolean;
  /** RFC 9701: ask for `application/token-introspection+jwt` and verify it. */
  readonly signedIntrospection: boolean;
  readonly jwksUri?: string;
  /** After a JWKS fetch, the least time before the next one (an unknown `kid`, or retries while the keys never loaded). */
  readonly jwksCooldownSeconds: number;
  /** Keys older than this are fetched again on the next token that needs them. */
  readonly jwksMaxAgeSeconds: number;
  readonly audience?: string;
  readonly allowedAlgorithms: readonly string[];
  readonly cache: TokenCacheConfig;
}

export interface UpstreamConfig {
  readonly name: string;
  /** Origin only: `http://host:port`. */
  readonly url: string;
  /** Deadline from dispatch to the response headers; also the longest pause allowed in a request body or a client's reading. */
  readonly timeoutMs: number;
  readonly connections: number;
  /** Requests allowed to wait for a connection beyond `connections`; more are answered 503 at once. */
  readonly maxPending: number;
}

export interface RouteConfig {
  readonly name: string;
  /** Normalized, no trailing slash (except the root `/`). */
  readonly pathPrefix: string;
  /** Upper-case methods. */
  readonly methods: readonly string[];
  readonly upstream: string;
  readonly auth: AuthMode;
  readonly scopes: readonly string[];
  readonly forwardAuthorization: boolean;
  /** Lower-case header the certificate is forwarded in (URL-encoded PEM); mtls routes default to `x-client-cert`. */
  readonly forwardCertificateHeader?: string;
  /** Accept `%25` followed by two hex digits (a double-encoded octet) in the path. */
  readonly allowDoubleEncoding: boolean;
}

export interface IdentityHeadersConfig {
  readonly clientId: string;
  readonly subject: string;
  readonly scope: string;
  readonly thumbprint: string;
}

export interface Config {
  readonly source: string;
  readonly listen: ListenConfig;
  readonly admin: AdminConfig;
  readonly clientCertificate: ClientCertificateConfig;
  readonly tokenValidation: TokenValidationMode;
  readonly authorizationServer?: AuthorizationServerConfig;
  readonly upstreams: ReadonlyMap<string, UpstreamConfig>;
  readonly routes: readonly RouteConfig[];
  readonly identityHeaders: IdentityHeadersConfig;
  readonly realm: string;
  readonly logging: {
    readonly level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
    /** Lines are written in batches of up to 8 KiB, at most this long after they were logged; 0: every line at once. Restart-only. */
    readonly flushIntervalMs: number;
  };
  readonly shutdown: { readonly gracePeriodSeconds: number };
  readonly reload: { readonly watch: boolean; readonly debounceMs: number };
}
