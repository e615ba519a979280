import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { parseDocument } from 'yaml';
import { GatewaySchema, type GatewayDocument, type TSchema } from './schema.js';
import { publishedSchema } from './published.js';
import { resolveConfig } from './resolve.js';
import type { Config, Document } from './types.js';

/** Every problem found, each naming its key path: `routes[2].upstream: unknown upstream "bank"`. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'));
  }
}

type Env = Readonly<Record<string, string | undefined>>;

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

const REFERENCE = /\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}/;

/**
 * Interpolates strings, and drops null members (`key:` with no value means unset, as YAML users
 * expect). `expanded` collects the key paths of strings that held a `${VAR}`.
 */
function interpolateTree(node: unknown, env: Env, path: string, problems: string[], expanded: Set<string>): unknown {
  if (typeof node === 'string') {
    if (!REFERENCE.test(node)) return node;
    expanded.add(path);
    return interpolate(node, env, path, problems);
  }
  if (Array.isArray(node)) return node.map((v, i) => interpolateTree(v, env, `${path}[${i}]`, problems, expanded));
  if (node !== null && typeof node === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) {
      if (v !== null) out[k] = interpolateTree(v, env, path ? `${path}.${k}` : k, problems, expanded);
    }
    return out;
  }
  return node;
}

/**
 * A `${VAR}` where a number or a boolean goes is a string once expanded (`port: ${PORT:-8443}`):
 * that string, and only that, becomes the number or boolean it spells. A value written in the file
 * keeps its YAML type, so `check_validity: 0` is an error, not `false`.
 */
function typeExpanded(node: unknown, schema: TSchema, path: string, expanded: ReadonlySet<string>): unknown {
  if (typeof node === 'string') {
    if (!expanded.has(path)) return node;
    if (schema['type'] === 'integer' && /^-?\d+$/.test(node)) return Number(node);
    if (schema['type'] === 'boolean' && (node === 'true' || node === 'false')) return node === 'true';
    return node;
  }
  if (Array.isArray(node)) return schema['items'] ? node.map((v, i) => typeExpanded(v, schema['items'] as TSchema, `${path}[${i}]`, expanded)) : node;
  if (node === null || typeof node !== 'object') return node;
  const properties = schema['properties'] as Record<string, TSchema> | undefined;
  const record = Object.values((schema['patternProperties'] as Record<string, TSchema> | undefined) ?? {})[0];
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) {
    const child = properties?.[k] ?? record;
    out[k] = child ? typeExpanded(v, child, path ? `${path}.${k}` : k, expanded) : v;
  }
  return out;
}

/** The short forms expanded (the loader's own view of the published schema). */
const validationSchema = publishedSchema({ expanded: true });
let validator: ValidateFunction<GatewayDocument> | undefined;
/** Compiled on first use (~100 ms), with defaults filled in. */
function validate(): ValidateFunction<GatewayDocument> {
  validator ??= new Ajv({ allErrors: true, useDefaults: true, verbose: true, strict: true, keywords: ['errorMessage'] }).compile<GatewayDocument>(validationSchema);
  return validator;
}

/** `/routes/2/upstream` → `routes[2].upstream`. */
function keyPath(pointer: string): string {
  let out = '';
  for (const raw of pointer.split('/').slice(1)) {
    const segment = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    out += /^\d+$/.test(segment) ? `[${segment}]` : out ? `.${segment}` : segment;
  }
  return out;
}

const join = (path: string, key: string): string => (path ? `${path}.${key}` : key);

/** One ajv error in the loader's words, or undefined for errors another one already says better. */
function describe(e: ErrorObject): string | undefined {
  const path = keyPath(e.instancePath);
  const schema = e.parentSchema as { errorMessage?: string; minimum?: number; maximum?: number; enum?: string[] } | undefined;
  switch (e.keyword) {
    case 'required':
      return `${join(path, String(e.params['missingProperty']))}: is required`;
    case 'additionalProperties':
      return `${join(path, String(e.params['additionalProperty']))}: unknown key`;
    case 'enum':
      return `${path}: must be one of ${(schema?.enum ?? []).join(', ')} (got ${JSON.stringify(e.data)})`;
    case 'minimum':
    case 'maximum':
      return `${path}: must be an integer from ${schema?.minimum} to ${schema?.maximum}`;
    case 'minLength':
      return `${path}: must not be empty`;
    case 'uniqueItems':
      return `${path}: must not list ${JSON.stringify(Array.isArray(e.data) ? e.data[Number(e.params['i'])] : '')} twice`;
    case 'pattern':
    case 'minItems':
      return `${path}: ${(schema?.errorMessage ?? `must match ${String(e.params['pattern'])}`).replace('{value}', String(e.data))}`;
    case 'type': {
      const type = String(e.params['type']);
      if (schema?.minimum !== undefined) return `${path}: must be an integer from ${schema.minimum} to ${schema.maximum}`;
      const words: Record<string, string> = { string: 'a string', boolean: 'true or false', object: 'a mapping', array: 'a list', integer: 'an integer' };
      return `${path || 'gateway.yaml'}: must be ${words[type] ?? type}`;
    }
    default:
      return `${path}: ${e.message ?? 'is invalid'}`;
  }
}

/** The validated document's keys camel-cased, following the schema (a record's own keys, e.g. upstream names, stay). */
function camelize(value: unknown, schema: TSchema): unknown {
  if (Array.isArray(value)) return value.map((v) => camelize(v, schema['items'] as TSchema));
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(schema['anyOf'])) {
    const branch = (schema['anyOf'] as TSchema[]).find((s) => s['type'] === 'object');
    return branch ? camelize(value, branch) : value;
  }
  const properties = schema['properties'] as Record<string, TSchema> | undefined;
  const patterns = schema['patternProperties'] as Record<string, TSchema> | undefined;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    const child = properties?.[key] ?? Object.values(patterns ?? {})[0];
    const name = properties ? key.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase()) : key;
    out[name] = child ? camelize(v, child) : v;
  }
  return out;
}

/**
 * Validates a parsed YAML document and compiles it into the Config the gateway is built from.
 * Pure apart from reading the files it references. Throws ConfigError with every problem.
 */
export function buildConfig(document: unknown, opts: { env?: Env; baseDir?: string; source?: string } = {}): Config {
  const problems: string[] = [];
  const expanded = new Set<string>();
  const interpolated = interpolateTree(document ?? {}, opts.env ?? process.env, '', problems, expanded);
  // The short form `name: URL` of an upstream, as the object it stands for.
  if (interpolated !== null && typeof interpolated === 'object' && 'upstreams' in interpolated && interpolated.upstreams !== null && typeof interpolated.upstreams === 'object') {
    const upstreams = interpolated.upstreams as Record<string, unknown>;
    for (const [name, u] of Object.entries(upstreams)) if (typeof u === 'string') upstreams[name] = { url: u };
  }
  const tree = typeExpanded(interpolated, validationSchema, '', expanded);
  const check = validate();
  const valid = check(tree);
  const add = (problem: string): void => {
    // One problem per key: a key already reported (unset variable, schema) is not reported again, nor anything
    // under it; that a key is unknown is always said.
    const path = problem.slice(0, problem.indexOf(':'));
    const taken = !problem.endsWith(': unknown key') && problems.some((p) => {
      const known = p.slice(0, p.indexOf(':'));
      return path === known || path.startsWith(`${known}.`) || path.startsWith(`${known}[`);
    });
    if (!taken) problems.push(problem);
  };
  for (const e of check.errors ?? []) {
    const problem = describe(e);
    if (problem !== undefined) add(problem);
  }
  let config: Config | undefined;
  try {
    const resolved = resolveConfig(camelize(tree, GatewaySchema) as Document, opts.baseDir ?? process.cwd(), opts.source ?? '<inline>');
    resolved.problems.forEach(add);
    config = resolved.config;
  } catch (error) {
    // Only a document the schema refused can break the compile step: its problems are reported above.
    if (valid) throw error;
  }
  if (problems.length > 0 || !valid || config === undefined) throw new ConfigError(problems);
  return config;
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
