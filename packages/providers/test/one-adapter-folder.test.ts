// One more provider API is one adapter folder plus catalogue rows: no source file elsewhere names Mistral, or OpenAI's
// embeddings API, which the gateway, router, cache and meter serve through their adapters alone.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from '@jest/globals';

const packagesDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Every file under `dir`, as paths relative to the packages folder. */
function filesUnder(dir: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...filesUnder(full));
    else found.push(path.relative(packagesDir, full).split(path.sep).join('/'));
  }
  return found;
}

function sourceFiles(): string[] {
  return readdirSync(packagesDir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .flatMap((entry) => {
      const src = path.join(packagesDir, entry.name, 'src');
      try {
        return filesUnder(src);
      } catch {
        return [];
      }
    });
}

describe('the Mistral chat API lives in one adapter folder', () => {
  it('names Mistral only in its folder, the catalogue, core API list and the adapter registry', () => {
    const files = sourceFiles();
    // The walk reached every package's sources (a wrong root would find nothing and prove nothing).
    expect(files).toContain('gateway/src/app.ts');
    expect(files).toContain('router/src/translate/index.ts');
    expect(files).toContain('cache/src/answer-forms.ts');
    expect(files).toContain('metering/src/meter.ts');
    const naming = files.filter((file) => /mistral/i.test(readFileSync(path.join(packagesDir, file), 'utf8'))).sort();
    // Beside the adapter: the catalogue and the price sources it is read from (Mistral as a provider of prices), and
    // the tokenizer of Mistral's published vocabulary (tekken), which names whose it is.
    expect(naming).toEqual([
      'core/src/catalogue-maintained.ts',
      'core/src/catalogue.ts',
      'core/src/genai-prices.ts',
      'core/src/price-source.ts',
      'core/src/pricing.ts',
      'core/src/provider-api.ts',
      'gateway/src/config/upstream-schema.ts',
      'providers/src/adapters.ts',
      'providers/src/bpe.ts',
      'providers/src/mistral-chat/index.ts',
      'providers/src/tokenizer.ts',
    ]);
  });
});

describe('the OpenAI embeddings API lives in one adapter folder', () => {
  it('is named only in its folder, core API list and the adapter registry (its models are catalogue rows by kind)', () => {
    const naming = sourceFiles()
      .filter((file) => readFileSync(path.join(packagesDir, file), 'utf8').includes('openai.embeddings'))
      .sort();
    expect(naming).toEqual([
      'core/src/provider-api.ts',
      'providers/src/adapters.ts',
      'providers/src/openai-embeddings/index.ts',
    ]);
  });
});

/** The gateway's sources and its provider call stage (`@tollgate/router/upstreams`), which calls the upstreams. */
function gatewaySources(): string[] {
  return sourceFiles().filter((file) => /^(gateway\/src\/|router\/src\/upstreams[/.])/.test(file));
}

describe("the gateway reads every API's wire from its adapter", () => {
  it("names neither Gemini nor Azure OpenAI: their paths, key headers and route's methods are their adapters'", () => {
    const gateway = gatewaySources();
    expect(gateway).toContain('gateway/src/app.ts');
    expect(gateway).toContain('router/src/upstreams/upstream.ts');
    const naming = gateway.filter((file) => /gemini|azure/i.test(readFileSync(path.join(packagesDir, file), 'utf8')));
    // The config describes the fields an Azure upstream's entry may hold (its API version, its deployments).
    expect(['gateway/src/config/upstream-schema.ts']).toEqual(expect.arrayContaining(naming));
  });

  it("names no upstream's key header or version header", () => {
    const naming = gatewaySources().filter((file) =>
      /x-goog-api-key|'api-key'|api-version|anthropic-version/.test(readFileSync(path.join(packagesDir, file), 'utf8')),
    );
    // The config describes the fields an upstream's entry may hold (an Anthropic version, an Azure API version).
    expect(['gateway/src/config/upstream-schema.ts']).toEqual(expect.arrayContaining(naming));
  });
});
