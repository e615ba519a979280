import { GatewaySchema, type TSchema } from './schema.js';

/** Markdown for gateway.yaml's keys, generated from the definition (docs/configuration.md, `npm run schema`). */
const cell = (text: string): string => text.replaceAll('|', '\\|').replaceAll('\n', ' ');

function typeOf(schema: TSchema): string {
  if (Array.isArray(schema['enum'])) return (schema['enum'] as string[]).map((v) => `\`${v}\``).join(', ');
  if (Array.isArray(schema['anyOf'])) return (schema['anyOf'] as TSchema[]).map(typeOf).join(' or ');
  const type = String(schema['type'] ?? '');
  if (type === 'array') return `list of ${typeOf(schema['items'] as TSchema)}`;
  if (type === 'integer' && schema['minimum'] !== undefined) return `integer, ${String(schema['minimum'])} to ${String(schema['maximum'])}`;
  if (type === 'object' && schema['patternProperties'] !== undefined) return 'mapping of name →';
  return type === 'object' ? 'mapping' : type;
}

function rows(schema: TSchema, path: string, out: string[]): void {
  for (const branch of Array.isArray(schema['anyOf']) ? (schema['anyOf'] as TSchema[]) : [schema]) {
    const properties = branch['properties'] as Record<string, TSchema> | undefined;
    const required = new Set((branch['required'] as string[] | undefined) ?? []);
    for (const [key, child] of Object.entries(properties ?? {})) {
      const at = path ? `${path}.${key}` : key;
      const fallback = child['default'];
      const shown = fallback === undefined ? (required.has(key) ? 'required' : '–') : `\`${JSON.stringify(fallback)}\``;
      out.push(`| \`${at}\` | ${cell(typeOf(child))} | ${shown === '`{}`' ? '–' : cell(shown)} | ${cell(String(child['description'] ?? ''))} |`);
      const inner = child['type'] === 'array' ? (child['items'] as TSchema) : child;
      rows(inner, child['type'] === 'array' ? `${at}[]` : at, out);
      for (const record of Object.values((inner['patternProperties'] as Record<string, TSchema> | undefined) ?? {})) rows(record, `${at}.<name>`, out);
    }
  }
}

/** docs/configuration.md's text: every key, its type, default and description. */
export function configurationReference(): string {
  const out = [
    '# Configuration reference',
    '',
    'Generated from `src/config/schema.ts` by `npm run schema` (do not edit). The same definition',
    'gives `schema/gateway.schema.json`, the types and the validation; `gateway.yaml` explains',
    'each key in context. A key whose default depends on another key says so in its description.',
    '',
    '| key | type | default | description |',
    '| --- | --- | --- | --- |',
  ];
  rows(GatewaySchema, '', out);
  return `${out.join('\n')}\n`;
}

