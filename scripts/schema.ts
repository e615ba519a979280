// Writes, from the TypeBox definition (src/config/schema.ts), schema/gateway.schema.json and the
// configuration reference docs/configuration.md. test/config/schema.test.ts fails when either is
// stale: run `npm run schema` after a change to the definition.
import { writeFileSync } from 'node:fs';
import { publishedSchemaText } from '../src/config/published.js';
import { configurationReference } from '../src/config/reference.js';

const root = new URL('../', import.meta.url);
writeFileSync(new URL('schema/gateway.schema.json', root), publishedSchemaText());
writeFileSync(new URL('docs/configuration.md', root), configurationReference());
process.stdout.write('wrote schema/gateway.schema.json and docs/configuration.md\n');
