import type { KeyObject, X509Certificate } from 'node:crypto';
import type {
  AUTH_MODES, CERTIFICATE_FORMATS, CLIENT_AUTH_METHODS, GatewayDocument, LOG_LEVELS, TLS_VERSIONS, TOKEN_VALIDATION_MODES,
} from './schema.js';

/**
 * The configuration as the code reads it: derived from the schema (./schema.ts), camel-cased,
 * then settled by the compile step (./resolve.ts): files read and parsed once, defaults that
 * depend on other keys applied, mode-dependent requirements turned into types.
 */

type Camel<S extends string> = S extends `${infer Head}_${infer Tail}` ? `${Head}${Capitalize<Camel<Tail>>}` : S;
/** gateway.yaml's snake_case keys as camelCase properties, deeply (record keys, e.g. upstream names, stay). */
export type Camelized<T> = T extends readonly (infer U)[]
  ? readonly Camelized<U>[]
  : T extends object
    ? { readonly [K in keyof T as K extends string ? Camel<K> : K]: Camelized<T[K]> }
    : T;

export type Document = Camelized<GatewayDocument>;

export type AuthMode = (typeof AUTH_MODES)[number];
export type TokenValidationMode = (typeof TOKEN_VALIDATION_MODES)[number];
export type ClientAuthMethod = (typeof CLIENT_AUTH_METHODS)[number];
export type CertificateFormat = (typeof CERTIFICATE_FORMATS)[number];
export type TlsVersion = (typeof TLS_VERSIONS)[number];
export type LogLevel = (typeof LOG_LEVELS)[number];

/** A file the config references, read once at load (a reload reads it again). */
export interface LoadedFile {
  readonly path: string;
  readonly contents: Buffer;
}
/** A PEM file of certificates, each parsed once. */
export interface PemFile extends LoadedFile {
  readonly certificates: readonly X509Certificate[];
}
/** A PEM private key, parsed once (never logged). */
export interface KeyFile extends LoadedFile {
  readonly key: KeyObject;
}

type ListenDocument = Document['listen'];
export interface TlsListenConfig extends Omit<NonNullable<ListenDocument['tls']>, 'certFile' | 'keyFile' | 'clientCaFile'> {
  readonly cert: PemFile;
  readonly key: KeyFile;
  readonly clientCa?: PemFile;
}
export interface ListenConfig extends Omit<ListenDocument, 'tls' | 'headersTimeoutMs'> {
  readonly tls?: TlsListenConfig;
  readonly headersTimeoutMs: number;
}
export interface AdminConfig extends Omit<Document['admin'], 'revocationSecretFile'> {
  /** The bearer secret of POST /revocations (never logged); absent: the endpoint is off. */
  readonly revocationSecret?: Buffer;
}

/** shared_state with a redis_url: what the shared store needs. Absent: each process keeps its own state. */
export interface SharedStateConfig {
  readonly url: string;
  readonly keyPrefix: string;
  readonly timeoutMs: number;
  /** At least 32 bytes; keys and sealing (src/shared/seal.ts). */
  readonly secret: Buffer;
  readonly ca?: PemFile;
}

type ClientCertificateDocument = Document['clientCertificate'];
export interface CertificateVerifyConfig extends Omit<ClientCertificateDocument['verify'], 'caFile'> {
  readonly ca?: PemFile;
}
type RevocationDocument = ClientCertificateDocument['revocation'];
export type RevocationSource = RevocationDocument['order'][number];
export interface OcspConfig extends Omit<RevocationDocument['ocsp'], 'enabled' | 'url'> {
  /** Replaces every certificate's AIA URL. */
  readonly url?: string;
}
export interface CrlConfig extends Omit<RevocationDocument['crl'], 'enabled' | 'files'> {
  readonly files: readonly LoadedFile[];
}
/** What revocation checking needs; `off` needs nothing. At least one source is enabled otherwise. */
export type RevocationConfig =
  | { readonly mode: 'off' }
  | {
      readonly mode: 'soft_fail' | 'hard_fail';
      /** The issuers of TPP certificates: the OCSP CertID, the signers of responses and CRLs. */
      readonly issuers: PemFile;
      readonly ocsp?: OcspConfig;
      readonly crl?: CrlConfig;
      /** The enabled sources, in the order they are asked. */
      readonly order: readonly RevocationSource[];
      readonly clockSkewSeconds: number;
      readonly retryAfterSeconds: number;
      readonly cacheEntries: number;
    };

/** With the preset applied: header, format and encoding always known. */
export interface ClientCertificateConfig
  extends Omit<ClientCertificateDocument, 'header' | 'format' | 'clientCertificateEncode' | 'chainHeader' | 'verifyHeader' | 'verifyHeaderValue' | 'verify' | 'revocation'> {
  /** Lower-case. */
  readonly header: string;
  readonly format: CertificateFormat;
  /** `client_certificate_encode`: the value is percent-encoded (never form-decoded). */
  readonly encoded: boolean;
  /** Lower-case header carrying the rest of the chain, if any. */
  readonly chainHeader?: string;
  readonly verifyHeader?: { readonly name: string; readonly success: readonly string[] };
  readonly verify: CertificateVerifyConfig;
  readonly revocation: RevocationConfig;
}

type AuthorizationServerDocument = NonNullable<Document['authorizationServer']>;
/** How certbound authenticates to the introspection endpoint, with what each method needs. */
export type ClientAuthConfig =
  | { readonly method: 'client_secret_basic' | 'client_secret_post'; readonly clientId: string; readonly secret: string }
  | { readonly method: 'private_key_jwt'; readonly clientId: string; readonly key: KeyFile; readonly algorithm: string; readonly audience: string }
  | { readonly method: 'tls_client_auth'; readonly clientId: string; readonly cert: PemFile; readonly key: KeyFile };

export interface IntrospectionConfig {
  readonly endpoint: string;
  readonly authentication: ClientAuthConfig;
  /** RFC 9701: the answer is a JWT signed with a key of `jwks`. */
  readonly signed: boolean;
}
export interface JwksConfig {
  readonly uri: string;
  readonly cooldownSeconds: number;
  readonly maxAgeSeconds: number;
}
export interface JwtConfig {
  readonly audience: string;
}
/** What token_validation asks for, with exactly the parts it needs. */
export type TokenValidation =
  | { readonly mode: 'introspection'; readonly introspection: IntrospectionConfig & { readonly signed: false } }
  | { readonly mode: 'introspection'; readonly introspection: IntrospectionConfig & { readonly signed: true }; readonly jwks: JwksConfig }
  | { readonly mode: 'jwt'; readonly jwt: JwtConfig; readonly jwks: JwksConfig }
  | { readonly mode: 'auto'; readonly introspection: IntrospectionConfig; readonly jwt: JwtConfig; readonly jwks: JwksConfig };

export interface AuthorizationServerConfig
  extends Pick<AuthorizationServerDocument, 'issuer' | 'timeoutMs' | 'clockSkewSeconds' | 'maxConcurrentRequests' | 'retryAfterSeconds' | 'requireTokenType' | 'allowedAlgorithms' | 'cache'> {
  /** Extra CA bundle for the server's TLS certificate. */
  readonly ca?: PemFile;
  /** tls_client_auth: certbound's certificate and key on every connection to the server. */
  readonly clientCertificate?: { readonly cert: PemFile; readonly key: KeyFile };
  /** The audience introspection answers may carry (jwt/auto's audience). */
  readonly audience?: string;
  readonly validation: TokenValidation;
}
export type TokenCacheConfig = AuthorizationServerConfig['cache'];

export interface UpstreamConfig extends Camelized<import('./schema.js').UpstreamDocument> {
  readonly name: string;
}

export interface RouteConfig extends Omit<Document['routes'][number], 'forwardAuthorization' | 'forwardCertificateHeader' | 'methods' | 'publicUrl'> {
  /** DPoP routes: the external origin a proof's htu must name (the route's public_url, else listen.public_url), normalized. */
  readonly publicOrigin?: string;
  /** Normalized, no trailing slash (except the root `/`). */
  readonly pathPrefix: string;
  /** Upper-case, without duplicates. */
  readonly methods: readonly string[];
  readonly forwardAuthorization: boolean;
  /** Lower-case header the certificate is forwarded in; mtls routes default to `x-client-cert`. */
  readonly forwardCertificateHeader?: string;
}

export type IdentityHeadersConfig = Document['identityHeaders'];

/** DPoP proofs (RFC 9449), as dpop: settles them. */
export interface DpopConfig extends Omit<Document['dpop'], 'nonceSecret'> {
  /** The HMAC key of nonces: the configured secret's bytes, or generated once per process. */
  readonly nonceSecret: Buffer;
}

export interface Config extends Omit<Document, 'listen' | 'admin' | 'clientCertificate' | 'authorizationServer' | 'upstreams' | 'routes' | 'dpop' | 'sharedState'> {
  readonly admin: AdminConfig;
  readonly dpop: DpopConfig;
  readonly sharedState?: SharedStateConfig;
  /** Absolute path of gateway.yaml, or `<inline>`. */
  readonly source: string;
  readonly listen: ListenConfig;
  readonly clientCertificate: ClientCertificateConfig;
  readonly authorizationServer?: AuthorizationServerConfig;
  readonly upstreams: ReadonlyMap<string, UpstreamConfig>;
  readonly routes: readonly RouteConfig[];
  /** Every file read, for the reload watcher. */
  readonly files: readonly string[];
}
