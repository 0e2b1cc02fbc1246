// A Batch input file's lines checked and its worst case priced at batch prices (docs/batch.md).
import { describe, expect, it } from '@jest/globals';
import { ApiError, createPricing } from '@tollgate/core';
import { readBatchInput } from '../src/batch/batch-input.js';

const pricing = createPricing();
/** gpt-4o-mini at batch prices: half of $0.15 and $0.60 per 1M tokens, in pico-USD a token. */
const INPUT_PICO = 75_000;
const OUTPUT_PICO = 300_000;

const line = (body: Record<string, unknown>, url = '/v1/chat/completions', customId = 'a') =>
  JSON.stringify({ custom_id: customId, method: 'POST', url, body });
const bytesOf = (body: Record<string, unknown>) => Buffer.byteLength(JSON.stringify(body));

/** The 400 a file is refused with. */
function refusal(text: string): ApiError {
  try {
    readBatchInput(text, pricing);
  } catch (error) {
    if (error instanceof ApiError) return error;
    throw error;
  }
  throw new Error('the file was not refused');
}

describe('readBatchInput', () => {
  it('sums each line: its body bytes as input and its cap times n as output, at batch prices', () => {
    const first = {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'héllo' }],
      max_completion_tokens: 300,
      n: 2,
    };
    const second = { model: 'gpt-4o-mini', input: 'Summarise.', max_output_tokens: 50 };
    const input = readBatchInput(`${line(first)}\n\n${line(second, '/v1/responses', 'b')}\n`, pricing);
    expect(input).toEqual({
      models: ['gpt-4o-mini'],
      lines: 2,
      worstCaseNanoUsd:
        Math.ceil((bytesOf(first) * INPUT_PICO + 600 * OUTPUT_PICO) / 1000) +
        Math.ceil((bytesOf(second) * INPUT_PICO + 50 * OUTPUT_PICO) / 1000),
    });
  });

  it("takes the model's max output for a line with no cap, and no output for embeddings", () => {
    const chat = { model: 'gpt-4o-mini', messages: [] };
    const embed = { model: 'text-embedding-3-small', input: 'a b c' };
    const maxOutput = pricing.get('gpt-4o-mini', 'batch').maxOutputTokens!;
    expect(maxOutput).toBeGreaterThan(1000);
    // An embedding model has no batch tier: its standard price ($0.02 per 1M), never under what a batch costs.
    const embedPico = pricing.get('text-embedding-3-small').inputMicro;
    const input = readBatchInput(`${line(chat)}\n${line(embed, '/v1/embeddings', 'b')}`, pricing);
    expect(input.worstCaseNanoUsd).toBe(
      Math.ceil((bytesOf(chat) * INPUT_PICO + maxOutput * OUTPUT_PICO) / 1000) +
        Math.ceil((bytesOf(embed) * embedPico) / 1000),
    );
    expect(input.models).toEqual(['gpt-4o-mini', 'text-embedding-3-small']);
  });

  it.each([
    ['not JSON', '{"custom_id":', 'Line 1'],
    ['not an object', '[1]', 'Line 1'],
    [
      'no custom_id',
      JSON.stringify({ method: 'POST', url: '/v1/responses', body: { model: 'gpt-4o-mini' } }),
      'custom_id',
    ],
    [
      'a GET',
      JSON.stringify({ custom_id: 'a', method: 'GET', url: '/v1/responses', body: { model: 'gpt-4o-mini' } }),
      'method',
    ],
    ['another endpoint', line({ model: 'gpt-4o-mini' }, '/v1/images/generations'), 'url must be one of'],
    ['no model', line({ messages: [] }), 'body.model'],
    ['an unknown model', line({ model: 'no-such-model' }), 'has no price'],
    ['a negative cap', line({ model: 'gpt-4o-mini', max_tokens: -1 }), 'body.max_tokens'],
    ['a custom_id twice', `${line({ model: 'gpt-4o-mini' })}\n${line({ model: 'gpt-4o-mini' })}`, 'Line 2'],
    ['no line at all', '\n\n', 'holds no request'],
  ])('refuses a file with %s (400, naming why)', (_what, text, why) => {
    const error = refusal(text);
    expect(error.code).toBe('invalid_request');
    expect(error.status).toBe(400);
    expect(error.message).toContain(why);
  });
});
