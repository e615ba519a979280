import type { IncomingMessage } from 'node:http';
import { GatewayError } from './errors.js';

/**
 * RFC 9112 §3.2 / RFC 3986 §3.2.2: `host [":" port]`, where host is an IP literal in brackets or a
 * name (which may be empty). Names are held to letters, digits, `-`, `.`, `_` and `~`: the
 * sub-delims RFC 3986 also allows (`,` and `;` among them) make `bank.example,evil.example`,
 * which frameworks read from X-Forwarded-Host as a list of two hosts.
 */
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~]*)(?::[0-9]*)?$/;

/**
 * What must hold of a request before anything reads it: exactly one valid Host on HTTP/1.1, at
 * most one on HTTP/1.0 (RFC 9112 §3.2: 400 otherwise), and at most `maxHeaders` header lines
 * (431). The server's maxHeadersCount is set one above the limit, so a request past it shows as
 * one header too many rather than being cut.
 */
export function checkRequestShape(req: IncomingMessage, maxHeaders: number): void {
  if (req.rawHeaders.length > 2 * maxHeaders) {
    throw new GatewayError('too_many_headers', `more than ${maxHeaders} request header fields`);
  }
  const host = req.headers.host;
  if (host === undefined) {
    if (req.httpVersionMinor >= 1) throw new GatewayError('bad_request', 'missing Host header');
    return;
  }
  if (!HOST.test(host)) throw new GatewayError('bad_request', 'invalid Host header');
  // Node keeps the first of two Host headers in req.headers: count them in the raw list.
  if (hostCount(req.rawHeaders) > 1) throw new GatewayError('bad_request', 'more than one Host header');
}

function hostCount(raw: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 4 && name.toLowerCase() === 'host') n++;
  }
  return n;
}
