// Envoy's x-forwarded-client-cert (XFCC). Quote-aware on purpose: a certificate Subject can hold
// `";Cert="...`, and a splitter that ignores quotes would read it as a second certificate.
import { malformed } from './decode.js';

/** One XFCC element: lower-case key → every value it was given (By, URI and DNS may repeat). */
export type XfccElement = ReadonlyMap<string, readonly string[]>;

/** Keys that carry one value at most; a second one in the same element is refused. */
const SINGLE = new Set(['hash', 'cert', 'chain', 'subject']);
const KEY = /^[A-Za-z]+$/;

/** Parses a whole XFCC header value into its elements, in order (nearest proxy last). */
export function parseXfcc(value: string): XfccElement[] {
  const elements: XfccElement[] = [];
  let element = new Map<string, string[]>();
  let at = 0;
  for (;;) {
    const eq = value.indexOf('=', at);
    if (eq < 0) throw malformed('XFCC: expected key=value');
    const key = value.slice(at, eq);
    if (!KEY.test(key)) throw malformed('XFCC: bad key');
    const { text, next } = value[eq + 1] === '"' ? quoted(value, eq + 2) : unquoted(value, eq + 1);
    const name = key.toLowerCase();
    const values = element.get(name);
    if (values === undefined) {
      element.set(name, [text]);
    } else if (SINGLE.has(name)) {
      throw malformed(`XFCC: repeated ${key} in one element`);
    } else {
      values.push(text);
    }
    if (next === value.length) break;
    if (value[next] === ',') {
      elements.push(element);
      element = new Map();
    }
    at = next + 1;
  }
  elements.push(element);
  return elements;
}

/** A quoted value from just after its opening quote; `\x` stands for `x`. */
function quoted(value: string, from: number): { text: string; next: number } {
  let text = '';
  let run = from;
  for (let at = from; at < value.length; at++) {
    const c = value[at];
    if (c === '\\') {
      text += value.slice(run, at) + value.charAt(at + 1);
      run = ++at + 1;
    } else if (c === '"') {
      const next = at + 1;
      if (next !== value.length && value[next] !== ';' && value[next] !== ',') {
        throw malformed('XFCC: unexpected data after a quoted value');
      }
      return { text: text + value.slice(run, at), next };
    }
  }
  throw malformed('XFCC: unterminated quoted value');
}

/** An unquoted value runs to the next `;` or `,`; it cannot contain a quote. */
function unquoted(value: string, from: number): { text: string; next: number } {
  let next = from;
  while (next < value.length && value[next] !== ';' && value[next] !== ',') next++;
  const text = value.slice(from, next);
  if (text.includes('"')) throw malformed('XFCC: quote inside an unquoted value');
  return { text, next };
}
