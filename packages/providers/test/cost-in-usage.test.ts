import { readFileSync } from 'node:fs';
import { describe, expect, it } from '@jest/globals';
import type { ProviderApi } from '@tollgate/core';
import { adapterFor } from '@tollgate/providers';
import { SseDecoder } from '@tollgate/providers/sse';
import { withCostUsd } from '@tollgate/providers/answers';

const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url));

/** The events of a stream whose reader said they carry the answer's final usage, with where. */
function finalUsageEvents(api: ProviderApi, stream: Buffer | string): { type: string; at: readonly string[] }[] {
  const reader = adapterFor(api).createReader({ stripAddedUsage: false });
  const decoder = new SseDecoder();
  const found: { type: string; at: readonly string[] }[] = [];
  for (const block of decoder.push(Buffer.from(stream))) {
    if (!block.hasData) continue;
    reader.onEvent(block.event, block.data);
    if (reader.finalUsageAt) found.push({ type: block.event || 'message', at: reader.finalUsageAt });
  }
  return found;
}

const sse = (chunks: unknown[]) => chunks.map((chunk) => `data: ${JSON.stringify(chunk)}\n\n`).join('');

describe('withCostUsd', () => {
  it('writes the cost as an exact JSON number last in the usage object at the path, the rest as it was', () => {
    const data = JSON.stringify({ type: 'response.completed', response: { id: 'r', usage: { input_tokens: 3 } } });
    expect(withCostUsd(data, ['response', 'usage'], '0.0000001')).toBe(
      '{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":3,"cost_usd":0.0000001}}}',
    );
    // An upstream's own cost_usd is replaced, where it stands.
    expect(withCostUsd('{"usage":{"cost_usd":9,"x":1}}', ['usage'], '0.5')).toBe('{"usage":{"cost_usd":0.5,"x":1}}');
  });

  it('leaves what it cannot place: no object at the path, data that is no JSON, a text that spells its mark', () => {
    expect(withCostUsd('{"usage":null}', ['usage'], '1')).toBeUndefined();
    expect(withCostUsd('{"choices":[]}', ['usage'], '1')).toBeUndefined();
    expect(withCostUsd('[DONE]', ['usage'], '1')).toBeUndefined();
    const spelled = JSON.stringify({ text: '\u0000tollgate:cost_usd', usage: {} });
    expect(withCostUsd(spelled, ['usage'], '1')).toBeUndefined();
  });
});

describe("each reader names the event that carries a stream's final usage", () => {
  it('OpenAI chat: the usage chunk', () => {
    expect(finalUsageEvents('openai.chat', fixture('openai-chat-stream.sse'))).toEqual([
      { type: 'message', at: ['usage'] },
    ]);
  });

  it('OpenAI Responses: the terminal event', () => {
    expect(finalUsageEvents('openai.responses', fixture('openai-responses-stream.sse'))).toEqual([
      { type: 'response.completed', at: ['response', 'usage'] },
    ]);
  });

  it("Anthropic: each message_delta, whose usage is cumulative (message_start's is not final)", () => {
    // This stream sends two: each carries the totals so far, the last the answer's.
    expect(finalUsageEvents('anthropic.messages', fixture('anthropic-messages-stream.sse'))).toEqual([
      { type: 'message_delta', at: ['usage'] },
      { type: 'message_delta', at: ['usage'] },
    ]);
  });

  it('Gemini: the chunk that finishes, not the running totals before it', () => {
    const stream = sse([
      { candidates: [{ content: { parts: [{ text: 'Hel' }] } }], usageMetadata: { promptTokenCount: 4 } },
      {
        candidates: [{ content: { parts: [{ text: 'lo' }] }, finishReason: 'STOP' }],
        usageMetadata: { promptTokenCount: 4, candidatesTokenCount: 2 },
      },
    ]);
    expect(finalUsageEvents('gemini.generate', stream)).toEqual([{ type: 'message', at: ['usageMetadata'] }]);
  });
});
