// `pnpm config-schema`: writes tollgate.config.schema.json, the config file's JSON Schema for editors, from the config's zod schema.
import { writeFileSync } from 'node:fs';
import { configJsonSchemaText } from '@tollgate/gateway';

const file = new URL('../tollgate.config.schema.json', import.meta.url);
writeFileSync(file, configJsonSchemaText());
process.stdout.write(`wrote ${file.pathname}\n`);
