import t from 'tap';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { parse } from 'yaml';
import { publishedSchemaText } from '../../src/config/published.js';
import { configurationReference } from '../../src/config/reference.js';
import { GatewaySchema, type TSchema } from '../../src/config/schema.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const SCHEMA_FILE = join(root, 'schema/gateway.schema.json');
const published = JSON.parse(readFileSync(SCHEMA_FILE, 'utf8')) as Record<string, unknown>;

t.test('schema/gateway.schema.json is generated from the definition (`npm run schema` after a change)', async (t) => {
  t.equal(readFileSync(SCHEMA_FILE, 'utf8'), publishedSchemaText());
});

t.test('docs/configuration.md is generated from the definition too', async (t) => {
  t.equal(readFileSync(join(root, 'docs/configuration.md'), 'utf8'), configurationReference());
});

t.test('gateway.yaml names the schema for editors', async (t) => {
  t.equal(readFileSync(join(root, 'gateway.yaml'), 'utf8').split('\n')[0], '# yaml-language-server: $schema=./schema/gateway.schema.json');
});

/** What an editor does: the published file, as is, on the raw YAML (before ${VAR} expansion), nothing coerced or filled in. */
const editor = new Ajv({ allErrors: true, strict: false }).compile(published);
const shipped = [
  'gateway.yaml',
  ...readdirSync(join(root, 'deploy/kubernetes'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('gateway.yaml'))
    .map((f) => join('deploy/kubernetes', f)),
];

t.test('the published schema accepts every shipped gateway.yaml as written', async (t) => {
  t.ok(shipped.length >= 3, shipped.join(', '));
  for (const file of shipped) {
    const ok = editor(parse(readFileSync(join(root, file), 'utf8')));
    t.ok(ok, `${file}: ${JSON.stringify(editor.errors)}`);
  }
});

t.test('the published schema refuses what the loader refuses: unknown keys, wrong types, unknown enum values', async (t) => {
  const base = { upstreams: { u: 'http://127.0.0.1:1' }, routes: [{ name: 'r', path_prefix: '/', upstream: 'u' }] };
  t.ok(editor(base));
  t.ok(editor({ ...base, listen: { port: '${PORT:-8443}' } }), 'a ${VAR} where a number goes');
  t.notOk(editor({ ...base, listen: { prot: 8443 } }), 'typo');
  t.notOk(editor({ ...base, listen: { port: 'eighty' } }), 'not a number');
  t.notOk(editor({ ...base, token_validation: 'magic' }), 'enum');
  t.notOk(editor({ upstreams: base.upstreams }), 'routes required');
  t.notOk(editor({ ...base, routes: [{ ...base.routes[0], auth: 'maybe' }] }), 'route auth');
});

/** Every property of the definition, with its key path (`upstreams.*.timeout_ms`). */
function properties(schema: TSchema, path = ''): [string, TSchema][] {
  const out: [string, TSchema][] = [];
  const objects = Array.isArray(schema['anyOf']) ? (schema['anyOf'] as TSchema[]) : [schema];
  for (const s of objects) {
    const props = s['properties'] as Record<string, TSchema> | undefined;
    for (const [key, child] of Object.entries(props ?? {})) {
      const at = path ? `${path}.${key}` : key;
      out.push([at, child], ...properties(child['type'] === 'array' ? (child['items'] as TSchema) : child, at));
    }
    const record = s['patternProperties'] as Record<string, TSchema> | undefined;
    for (const child of Object.values(record ?? {})) out.push([`${path}.*`, child], ...properties(child, `${path}.*`));
  }
  return out;
}
const KEYS = new Map(properties(GatewaySchema));

t.test('every key has a description, and a default or a description saying what happens without it', async (t) => {
  t.ok(KEYS.size > 80, `${KEYS.size} keys`);
  const required = new Set(['upstreams', 'routes', 'listen.tls.cert_file', 'listen.tls.key_file', 'authorization_server.issuer', 'upstreams.*', 'upstreams.*.url', 'routes.name', 'routes.path_prefix', 'routes.upstream']);
  for (const [key, schema] of KEYS) {
    const description = String(schema['description'] ?? '');
    t.ok(description.length > 10, `${key} has a description`);
    if (schema['default'] === undefined && !required.has(key) && !/Default|Required|required|Optional|Without it/.test(description) && schema['type'] !== 'object') {
      t.fail(`${key}: no default, and the description does not say what happens without one`);
    }
  }
});

/** Each key written in gateway.yaml (set, or commented out as `# key: value`), with the comment block above it. */
function documentedKeys(text: string): { path: string; comment: string; value: string }[] {
  const out: { path: string; comment: string; value: string }[] = [];
  const stack: { indent: number; key: string }[] = [];
  let comment: string[] = [];
  for (const line of text.split('\n')) {
    const key = /^(\s*)(# )?([a-z_][a-z0-9_-]*):(?: (.*))?$/.exec(line);
    const value = key?.[4]?.trim() ?? '';
    // A commented-out key shows one value; a prose comment that happens to start with "word:" is prose.
    const isKey = key !== null && (key[2] === undefined || (!(key[3] as string).includes('-') && /^(\S+|\[[^\]]*\])$/.test(value)));
    if (!isKey) {
      if (/^\s*#/.test(line)) comment.push(line.replace(/^\s*#\s?/, ''));
      else if (line.trim() === '' || /^\s*-/.test(line)) comment = [];
      if (/^\s*-/.test(line)) stack.push({ indent: line.search(/\S/), key: '[]' });
      continue;
    }
    const indent = key[1]?.length ?? 0;
    while (stack.length > 0 && (stack.at(-1) as { indent: number }).indent >= indent) stack.pop();
    const parents = stack.map((s) => s.key);
    if (!parents.includes('[]')) {
      const path = [...parents, parents.at(-1) === 'upstreams' ? '*' : (key[3] as string)].join('.');
      out.push({ path, comment: comment.join(' '), value });
    }
    if (key[2] === undefined) stack.push({ indent, key: parents.at(-1) === 'upstreams' ? '*' : (key[3] as string) });
    comment = [];
  }
  return out;
}

const written = (value: unknown): string => (Array.isArray(value) ? `[${value.join(', ')}]` : String(value));

t.test("gateway.yaml's keys exist in the schema, and the defaults its comments state are the schema's", async (t) => {
  const keys = documentedKeys(readFileSync(join(root, 'gateway.yaml'), 'utf8'));
  let compared = 0;
  for (const { path, comment, value } of keys) {
    const schema = KEYS.get(path);
    if (!schema) {
      t.fail(`gateway.yaml documents ${path}, which the schema does not have`);
      continue;
    }
    const fallback = schema['default'];
    const stated = /\bDefault:? (\[[^\]]*\]|[^\s,;]+)/.exec(comment)?.[1]?.replace(/[.,;:]$/, '');
    if (fallback === undefined || (typeof fallback === 'object' && !Array.isArray(fallback))) continue;
    if (stated === undefined) {
      t.fail(`${path}: gateway.yaml does not state its default (${written(fallback)})`);
      continue;
    }
    // Prose ("Default: the four suites FAPI allows") is not a value: then the value shown must be the default.
    const literal = /^(\[.*\]|-?\d+|true|false|[a-z0-9./-]*[0-9./-][a-z0-9./-]*|[a-z_-]+)$/.test(stated) && !['the', 'none', 'from'].includes(stated);
    t.equal(literal ? stated : value, written(fallback), `${path}: ${literal ? 'the default stated' : 'the value shown'} is the schema's`);
    compared++;
  }
  t.ok(compared >= 40, `${compared} defaults compared`);
});
