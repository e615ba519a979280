import { GatewaySchema, type TSchema } from './schema.js';

const ENV_REFERENCE = { type: 'string', pattern: '\\$\\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\\}', description: 'An environment variable, expanded when the file is loaded.' };

/**
 * Drops, from every `required`, the keys that have a default: a file may leave them out. For the
 * loader's own validator, a short-form union (`name: URL` or the object) becomes its object branch:
 * the loader expands the short form first, and ajv applies no defaults inside `anyOf`. For the
 * published file, a number or boolean also accepts a `${VAR}` string (the loader validates after
 * expanding, when it is a number or boolean again).
 */
function relax(node: unknown, expanded: boolean): unknown {
  if (Array.isArray(node)) return node.map((n) => relax(n, expanded));
  if (node === null || typeof node !== 'object') return node;
  const type = (node as { type?: unknown }).type;
  if (!expanded && (type === 'integer' || type === 'boolean')) {
    // In the file a number or boolean may be written as ${VAR}: a string until the loader expands it.
    const { description, default: fallback, ...rest } = node as { description?: string; default?: unknown };
    return { anyOf: [rest, ENV_REFERENCE], ...(description !== undefined ? { description } : {}), ...(fallback !== undefined ? { default: fallback } : {}) };
  }
  const anyOf = (node as { anyOf?: unknown[] }).anyOf;
  const object = anyOf?.find((b) => (b as { type?: string }).type === 'object');
  if (expanded && object !== undefined) return relax(object, expanded);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) out[k] = relax(v, expanded);
  const properties = out['properties'] as Record<string, { default?: unknown }> | undefined;
  if (properties && Array.isArray(out['required'])) {
    const required = (out['required'] as string[]).filter((key) => properties[key]?.default === undefined);
    if (required.length > 0) out['required'] = required;
    else delete out['required'];
  }
  return out;
}

/**
 * The JSON Schema of gateway.yaml (draft 2020-12 compatible, as ajv and the YAML language server
 * read it): the TypeBox definition as plain JSON, with defaulted keys optional. ajv validates with
 * the same document (short forms expanded), so what editors check and what certbound checks
 * cannot drift apart.
 */
export function publishedSchema(options: { expanded?: boolean } = {}): TSchema {
  const plain = JSON.parse(JSON.stringify(GatewaySchema)) as TSchema;
  return { $schema: 'http://json-schema.org/draft-07/schema#', ...(relax(plain, options.expanded === true) as TSchema) };
}

/** schema/gateway.schema.json's text. */
export const publishedSchemaText = (): string => `${JSON.stringify(publishedSchema(), null, 2)}\n`;
