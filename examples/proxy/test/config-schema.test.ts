// The published JSON Schema of the config file: the committed file is what the zod schema generates, and the example configs pass a real JSON Schema validator.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from '@jest/globals';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { configJsonSchemaText, validateConfig } from '@tollgate/gateway';
import { WITH_MOCK } from '../../../packages/gateway/test/helpers/mock-upstream.js';

const read = (file: string) => readFileSync(new URL(`../${file}`, import.meta.url), 'utf8');
const committed = read('tollgate.config.schema.json');
// strict: a keyword ajv would ignore fails the compile; a duration is `"type": ["number", "string"]`, a union type.
const ajv = new Ajv2020({
  strict: true,
  allowUnionTypes: true,
  allErrors: true,
  formats: { uri: (text: string) => URL.canParse(text) },
});
const matchesSchema = ajv.compile(JSON.parse(committed) as object);

/** Every whole config file of the example: the documented example and the ones the README quotes. */
const exampleConfigs = [
  'config.example.json',
  ...readdirSync(new URL('../configs', import.meta.url))
    .filter((file) => file.endsWith('.json'))
    .map((file) => `configs/${file}`),
];

describe('the config file JSON Schema', () => {
  it('is what the config schema generates today (run `pnpm --filter @tollgate/example-proxy config-schema` after changing it)', () => {
    expect(committed).toBe(configJsonSchemaText());
  });

  it.each(exampleConfigs)('accepts %s, which the proxy accepts too', (file) => {
    const config = JSON.parse(read(file)) as unknown;
    expect(matchesSchema(config) ? [] : matchesSchema.errors).toEqual([]);
    expect(() => validateConfig(config)).not.toThrow();
  });

  it('names the schema in the documented example, and the proxy leaves "$schema" out of its config', () => {
    const example = JSON.parse(read('config.example.json')) as Record<string, unknown>;
    expect(example.$schema).toBe('./tollgate.config.schema.json');
    expect(validateConfig({ ...WITH_MOCK, $schema: './tollgate.config.schema.json', port: 8080 })).toEqual({
      ...WITH_MOCK,
      port: 8080,
    });
  });

  it.each([
    [{ tiers: { free: { requestsPerMinut: 5 } } }, '/tiers/free'],
    [{ tiers: { free: { requestsPerMinute: 0 } } }, '/tiers/free/requestsPerMinute'],
    [{ keys: [{ id: 'k', sha256: 'abc' }] }, '/keys/0/sha256'],
    [{ log: { level: 'verbose' } }, '/log/level'],
    [{ storeOutage: { policy: 'lease', slice: 2 } }, '/storeOutage'],
    [{ cache: { ttl: true } }, '/cache/ttl'],
  ])('refuses %j at the field the proxy names too', (config, where) => {
    expect(matchesSchema(config)).toBe(false);
    expect(matchesSchema.errors?.map((error) => error.instancePath)).toContain(where);
    expect(() => validateConfig(config)).toThrow();
  });
});
