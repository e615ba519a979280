import { GatewayError } from './errors.js';
import type { RouteConfig } from './config/types.js';

export interface Target {
  /** Decoded, dot-segments resolved, `//` merged: what routes match against. */
  readonly path: string;
  /** The same path, re-encoded: what the upstream receives (plus `query`). */
  readonly encodedPath: string;
  /** Raw query string including the leading `?`, or ''. */
  readonly query: string;
  /** The path holds `%25` and two hex digits: an octet encoded twice, which an upstream that decodes twice reads as another path. */
  readonly doubleEncoded?: true;
}

/** What the router found for a request, as data: the stages decide what each case answers. */
export type Routed<R> =
  | { readonly kind: 'match'; readonly route: R; readonly target: Target }
  | { readonly kind: 'no_route'; readonly target: Target }
  /** The path is the route's, the method is not: 405 with the route's methods, counted on the route. */
  | { readonly kind: 'method_not_allowed'; readonly route: R; readonly target: Target };

const PCHAR = /[A-Za-z0-9\-._~!$&'()*+,;=:@]/;

function encodeSegment(segment: string): string {
  let out = '';
  for (const ch of segment) out += PCHAR.test(ch) ? ch : encodeURIComponent(ch);
  return out;
}

function resolveDotSegments(segments: readonly string[]): string[] {
  const out: string[] = [];
  for (const s of segments) {
    if (s === '' || s === '.') continue;
    if (s === '..') out.pop();
    else out.push(s);
  }
  return out;
}

/**
 * Paths that need no decoding, re-encoding or dot-segment resolution: non-empty segments of
 * unreserved and sub-delim characters except `;`, none of them `.` or `..`. parseTarget returns these as they
 * are; checking this first spares the common request the general path below.
 */
const PLAIN_PATH = /^(?:\/(?!\.\.?(?:[/?]|$))[A-Za-z0-9\-._~!$&'()*+,=:@]+)*\/?(?:\?|$)/;

/**
 * Parses a request target into the path routes match and the path forwarded. Anything that could
 * be read two ways by certbound and the upstream (encoded slashes or backslashes, NUL, bad
 * percent-encoding, invalid UTF-8) is refused rather than guessed.
 */
export function parseTarget(url: string): Target {
  if (url.charCodeAt(0) === 47 /* / */ && PLAIN_PATH.test(url)) {
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    return { path, encodedPath: path, query: q === -1 ? '' : url.slice(q) };
  }
  let raw = url;
  if (!raw.startsWith('/')) {
    const m = /^https?:\/\/[^/?#]*(.*)$/i.exec(raw);
    if (!m) throw new GatewayError('bad_path', 'request target must be an absolute path');
    raw = m[1] || '/';
    if (!raw.startsWith('/')) raw = `/${raw}`;
  }
  const q = raw.indexOf('?');
  const rawPath = q === -1 ? raw : raw.slice(0, q);
  const query = q === -1 ? '' : raw.slice(q);
  if (rawPath.includes('\\') || rawPath.includes('\0') || rawPath.includes('#')) {
    throw new GatewayError('bad_path', 'path contains a forbidden character');
  }
  // Java servers read `..;/` as `..` and `;` as the start of path parameters: a path certbound
  // matched one way could be served another. Open-banking APIs use no matrix parameters.
  if (rawPath.includes(';') || /%3b/i.test(rawPath)) throw new GatewayError('bad_path', 'path contains ";"');
  if (/%(?![0-9A-Fa-f]{2})/.test(rawPath)) throw new GatewayError('bad_path', 'path has invalid percent-encoding');
  if (/%(2f|5c|00)/i.test(rawPath)) throw new GatewayError('bad_path', 'path contains an encoded slash, backslash or NUL');
  let decoded: string;
  try {
    decoded = decodeURIComponent(rawPath);
  } catch {
    throw new GatewayError('bad_path', 'path is not valid UTF-8 after percent-decoding');
  }
  const segments = resolveDotSegments(decoded.split('/'));
  const trailing = decoded.length > 1 && decoded.endsWith('/') && segments.length > 0 ? '/' : '';
  const path = `/${segments.join('/')}${trailing}`;
  const encodedPath = `/${segments.map(encodeSegment).join('/')}${trailing}`;
  return { path, encodedPath, query, ...(/%25[0-9A-Fa-f]{2}/.test(rawPath) ? { doubleEncoded: true as const } : {}) };
}

/** The form a `path_prefix` must already be in; undefined when it is not a clean absolute path. */
export function normalizePrefix(prefix: string): string | undefined {
  if (prefix.includes('%') || prefix.includes('\\') || prefix.includes('?') || prefix.includes('#') || prefix.includes(';')) return undefined;
  const segments = prefix.split('/').slice(1);
  if (segments.some((s) => s === '.' || s === '..')) return undefined;
  return `/${segments.filter((s) => s !== '').join('/')}`;
}

/** True when `path` is `prefix` itself or lies below it on a segment boundary. */
function under(path: string, prefix: string): boolean {
  if (prefix === '/') return true;
  return path === prefix || (path.startsWith(prefix) && path.charCodeAt(prefix.length) === 47 /* / */);
}

/** Throws GatewayError `bad_path` for a target that cannot be read one way only; otherwise Routed. */
export type Router<R> = (method: string, url: string) => Routed<R>;

/** Compiles the route table once: longest `path_prefix` first. */
export function createRouter<R extends { readonly config: RouteConfig }>(routes: readonly R[]): Router<R> {
  const table = [...routes].sort((a, b) => b.config.pathPrefix.length - a.config.pathPrefix.length);
  return (method, url) => {
    const target = parseTarget(url);
    const route = table.find((r) => under(target.path, r.config.pathPrefix));
    if (!route) return { kind: 'no_route', target };
    if (target.doubleEncoded && !route.config.allowDoubleEncoding) {
      throw new GatewayError('bad_path', 'path contains a double-encoded octet (%25 and two hex digits)');
    }
    if (!route.config.methods.includes(method)) return { kind: 'method_not_allowed', route, target };
    return { kind: 'match', route, target };
  };
}
