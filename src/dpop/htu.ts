import { isGatewayError } from '../errors.js';
import { parseTarget } from '../route.js';

/**
 * RFC 9449 §4.3 check 9: the proof's `htu` is the URI of the request, without query and fragment,
 * compared after RFC 3986 §6.2.2 (case, percent-encoding, dot segments) and §6.2.3 (default port,
 * empty path) normalisation. The expected side is certbound's configured origin plus the path the
 * router already normalized: never the Host header, which a client or a proxy can change.
 */

/** The htu as the canonical string expected ones are built as, or undefined when it is no http(s) URI. */
export function normalizeHtu(htu: string): string | undefined {
  // scheme://authority, then the path as written: normalized below exactly as a request's is.
  const parts = /^[Hh][Tt][Tt][Pp][Ss]?:\/\/([^/?#\\@]+)([^?#]*)/.exec(htu);
  if (parts === null) return undefined;
  let url: URL;
  try {
    url = new URL(htu);
  } catch {
    return undefined;
  }
  const path = parts[2] === '' ? '/' : (parts[2] as string);
  try {
    // The router's own normalization: percent-decoding, dot segments, re-encoding with one case.
    return `${url.protocol}//${url.host}${parseTarget(path).encodedPath}`;
  } catch (error) {
    if (isGatewayError(error)) return undefined;
    throw error;
  }
}

/**
 * Whether `htu` names `origin` + `encodedPath` (both already canonical). A client that sends
 * exactly that costs one string comparison; anything else is normalized first.
 */
export function htuMatches(htu: string, origin: string, encodedPath: string): boolean {
  if (htu.length === origin.length + encodedPath.length && htu.startsWith(origin) && htu.endsWith(encodedPath)) return true;
  return normalizeHtu(htu) === origin + encodedPath;
}
