import { normalizePrefix } from '../route.js';
import { NO_ROUTE } from '../observability/record.js';
import type { Problems } from './problems.js';
import { publicOriginOf, routeOrigin } from './resolve-dpop.js';
import { TOKEN_AUTH_MODES } from './schema.js';
import type { Document, RouteConfig, UpstreamConfig } from './types.js';

/** The compile step for upstreams and routes: origins, names, prefixes, and what each route kind needs. */

export function resolveUpstreams(doc: Document['upstreams'], p: Problems): Map<string, UpstreamConfig> {
  const out = new Map<string, UpstreamConfig>();
  for (const [name, value] of Object.entries(doc)) {
    // The loader turned the short form into the object before validation.
    if (typeof value === 'string') continue;
    const at = `upstreams.${name}.url`;
    let parsed: URL;
    try {
      parsed = new URL(value.url);
    } catch {
      p.add(at, `"${value.url}" is not an http(s) URL`);
      continue;
    }
    if ((parsed.pathname !== '/' && parsed.pathname !== '') || parsed.search || parsed.username || parsed.hash) {
      p.add(at, 'must be an origin (scheme://host:port) without path, query or credentials');
      continue;
    }
    out.set(name, { ...value, name, url: parsed.origin });
  }
  return out;
}

export const takesToken = (auth: string): boolean => (TOKEN_AUTH_MODES as readonly string[]).includes(auth);

export function resolveRoutes(doc: Document, upstreams: Document['upstreams'], p: Problems): RouteConfig[] {
  const listenOrigin = { set: doc.listen.publicUrl !== undefined, origin: doc.listen.publicUrl === undefined ? undefined : publicOriginOf('listen.public_url', doc.listen.publicUrl, p) };
  const names = new Set<string>();
  const prefixes = new Set<string>();
  return doc.routes.map((r, i): RouteConfig => {
    const at = `routes[${i}]`;
    if (names.has(r.name)) p.add(`${at}.name`, `duplicate route name "${r.name}"`);
    if (r.name === NO_ROUTE) p.add(`${at}.name`, `"${NO_ROUTE}" is reserved: requests that match no route are counted and logged under it`);
    names.add(r.name);
    const pathPrefix = r.pathPrefix.startsWith('/') ? normalizePrefix(r.pathPrefix) : undefined;
    if (pathPrefix === undefined) p.add(`${at}.path_prefix`, `"${r.pathPrefix}" must be an absolute, normalized path without percent-encoding`);
    else if (prefixes.has(pathPrefix)) p.add(`${at}.path_prefix`, `"${pathPrefix}" is already used by another route`);
    if (pathPrefix !== undefined) prefixes.add(pathPrefix);
    if (!Object.hasOwn(upstreams, r.upstream)) p.add(`${at}.upstream`, `unknown upstream "${r.upstream}"`);
    if (!takesToken(r.auth) && r.scopes.length > 0) p.add(`${at}.scopes`, `has no effect with auth: ${r.auth}`);
    // A DPoP request need present no certificate: its roles could not be checked.
    if (r.psd2Roles.length > 0 && r.auth !== 'certificate_bound_token' && r.auth !== 'mtls') {
      p.add(`${at}.psd2_roles`, `needs a client certificate on every request: only with auth: certificate_bound_token or mtls, not ${r.auth}`);
    }
    const publicOrigin = routeOrigin(r, at, listenOrigin, p);
    const forward = r.forwardCertificateHeader ?? (r.auth === 'mtls' ? 'x-client-cert' : undefined);
    const { forwardCertificateHeader: _f, forwardAuthorization, methods, publicUrl: _p, ...rest } = r;
    return {
      ...rest,
      ...(publicOrigin !== undefined ? { publicOrigin } : {}),
      pathPrefix: pathPrefix ?? r.pathPrefix,
      methods: [...new Set(methods.map((m) => m.toUpperCase()))],
      // At a token endpoint Authorization is the client's own credential for the server.
      forwardAuthorization: forwardAuthorization ?? r.auth === 'mtls',
      ...(forward ? { forwardCertificateHeader: p.headerName(`${at}.forward_certificate_header`, forward) } : {}),
    };
  });
}

