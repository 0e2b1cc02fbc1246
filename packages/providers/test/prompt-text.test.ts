// mapPromptText of every adapter: which texts of a request are the caller's prompt (visited in prompt order, changed
// copy on write), and which stay untouched (tool definitions and calls, reasoning, media, the request's own fields).
import { describe, expect, it } from '@jest/globals';
import { adapterFor, providerApis } from '@tollgate/providers';
import type { ProviderAdapter } from '@tollgate/providers';

type Json = Record<string, unknown>;

/** The texts an adapter visits, in order, and the body with each one upper-cased. */
function visit(adapter: ProviderAdapter, body: Json): { texts: string[]; mapped: Json } {
  const texts: string[] = [];
  const mapped = adapter.mapPromptText!(body, (text) => {
    texts.push(text);
    return text.toUpperCase();
  });
  return { texts, mapped };
}

/** A deep copy, to prove the original body was not changed. */
const copy = (body: Json): Json => structuredClone(body);

describe('every adapter reads prompt texts', () => {
  it.each(providerApis())('%s has mapPromptText, and gives back the same body when no text changes', (api) => {
    const adapter = adapterFor(api);
    expect(typeof adapter.mapPromptText).toBe('function');
    const body: Json = { model: 'm', messages: [{ role: 'user', content: 'hi' }], input: 'hi', contents: [] };
    expect(adapter.mapPromptText!(body, (text) => text)).toBe(body);
  });
});

describe('Chat Completions (openai.chat, openai.compatible, mistral.chat)', () => {
  const body: Json = {
    model: 'gpt-4o-mini',
    messages: [
      { role: 'system', content: 'be brief' },
      { role: 'developer', content: [{ type: 'text', text: 'no jokes' }] },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'look at this' },
          { type: 'image_url', image_url: { url: 'https://x.test/a.png' } },
        ],
        name: 'alice',
      },
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 'c1', type: 'function', function: { name: 'lookup', arguments: '{"q":"a"}' } }],
      },
      { role: 'tool', tool_call_id: 'c1', content: 'tool said so' },
      { role: 'assistant', content: [{ type: 'refusal', refusal: 'no' }] },
    ],
    tools: [{ type: 'function', function: { name: 'lookup', description: 'looks things up', parameters: {} } }],
    max_tokens: 10,
  };

  it.each(['openai.chat', 'openai.compatible', 'mistral.chat'] as const)(
    '%s visits system, developer, user and tool texts in order; nothing else',
    (api) => {
      const before = copy(body);
      const { texts, mapped } = visit(adapterFor(api), body);
      expect(texts).toEqual(['be brief', 'no jokes', 'look at this', 'tool said so']);
      expect(body).toEqual(before);
      const messages = mapped.messages as Json[];
      expect(messages[0]).toEqual({ role: 'system', content: 'BE BRIEF' });
      expect(messages[1]).toEqual({ role: 'developer', content: [{ type: 'text', text: 'NO JOKES' }] });
      expect(messages[2]!.content).toEqual([
        { type: 'text', text: 'LOOK AT THIS' },
        { type: 'image_url', image_url: { url: 'https://x.test/a.png' } },
      ]);
      expect(messages[2]!.name).toBe('alice');
      // Unchanged parts are shared, not copied.
      expect(messages[3]).toBe((body.messages as Json[])[3]);
      expect(messages[5]).toBe((body.messages as Json[])[5]);
      expect(mapped.tools).toBe(body.tools);
      expect(mapped.max_tokens).toBe(10);
    },
  );
});

describe('OpenAI Responses', () => {
  const responses = adapterFor('openai.responses');

  it('visits instructions, then a string input', () => {
    const { texts, mapped } = visit(responses, { model: 'm', instructions: 'sys', input: 'question' });
    expect(texts).toEqual(['sys', 'question']);
    expect(mapped).toEqual({ model: 'm', instructions: 'SYS', input: 'QUESTION' });
  });

  it('visits message items and tool outputs; leaves calls and reasoning', () => {
    const body: Json = {
      model: 'm',
      input: [
        {
          role: 'user',
          content: [
            { type: 'input_text', text: 'hello' },
            { type: 'input_image', image_url: 'x' },
          ],
        },
        { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'earlier answer' }] },
        { type: 'function_call', call_id: 'c1', name: 'f', arguments: '{"a":1}' },
        { type: 'function_call_output', call_id: 'c1', output: 'result text' },
        { type: 'reasoning', summary: [{ type: 'summary_text', text: 'thought' }], encrypted_content: 'enc' },
        { role: 'user', content: 'plain string' },
      ],
    };
    const before = copy(body);
    const { texts, mapped } = visit(responses, body);
    expect(texts).toEqual(['hello', 'earlier answer', 'result text', 'plain string']);
    expect(body).toEqual(before);
    const input = mapped.input as Json[];
    expect((input[0]!.content as Json[])[0]).toEqual({ type: 'input_text', text: 'HELLO' });
    expect(input[2]).toBe((body.input as Json[])[2]);
    expect(input[3]).toEqual({ type: 'function_call_output', call_id: 'c1', output: 'RESULT TEXT' });
    expect(input[4]).toBe((body.input as Json[])[4]);
    expect(input[5]).toEqual({ role: 'user', content: 'PLAIN STRING' });
  });
});

describe('Anthropic Messages', () => {
  const messages = adapterFor('anthropic.messages');

  it('visits the system prompt (string or blocks), text blocks, tool results and text documents', () => {
    const body: Json = {
      model: 'claude-haiku-4-5',
      max_tokens: 10,
      system: [{ type: 'text', text: 'you are terse', cache_control: { type: 'ephemeral' } }],
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'read this' },
            { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'doc body' } },
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } },
          ],
        },
        {
          role: 'assistant',
          content: [
            { type: 'thinking', thinking: 'hmm', signature: 'sig' },
            { type: 'tool_use', id: 't1', name: 'f', input: { q: 'x' } },
          ],
        },
        {
          role: 'user',
          content: [{ type: 'tool_result', tool_use_id: 't1', content: [{ type: 'text', text: 'tool out' }] }],
        },
        { role: 'user', content: 'last words' },
      ],
    };
    const before = copy(body);
    const { texts, mapped } = visit(messages, body);
    expect(texts).toEqual(['you are terse', 'read this', 'doc body', 'tool out', 'last words']);
    expect(body).toEqual(before);
    expect(mapped.system).toEqual([{ type: 'text', text: 'YOU ARE TERSE', cache_control: { type: 'ephemeral' } }]);
    const turns = mapped.messages as Json[];
    expect((turns[0]!.content as Json[])[1]).toEqual({
      type: 'document',
      source: { type: 'text', media_type: 'text/plain', data: 'DOC BODY' },
    });
    expect((turns[0]!.content as Json[])[2]).toBe(((body.messages as Json[])[0]!.content as Json[])[2]);
    // Thinking is signed by the provider: never changed.
    expect(turns[1]).toBe((body.messages as Json[])[1]);
    expect(turns[3]).toEqual({ role: 'user', content: 'LAST WORDS' });

    const plain = visit(messages, { model: 'm', system: 'sys', messages: [{ role: 'user', content: 'q' }] });
    expect(plain.texts).toEqual(['sys', 'q']);
    expect(plain.mapped.system).toBe('SYS');
  });
});

describe('Gemini', () => {
  it('visits the system instruction and every content text part, not thoughts, calls or media', () => {
    const body: Json = {
      systemInstruction: { parts: [{ text: 'be kind' }] },
      contents: [
        { role: 'user', parts: [{ text: 'first' }, { inlineData: { mimeType: 'image/png', data: 'AAAA' } }] },
        { role: 'model', parts: [{ text: 'pondering', thought: true }, { functionCall: { name: 'f', args: {} } }] },
        { role: 'user', parts: [{ functionResponse: { name: 'f', response: { ok: true } } }, { text: 'second' }] },
      ],
      generationConfig: { maxOutputTokens: 5 },
    };
    const before = copy(body);
    const { texts, mapped } = visit(adapterFor('gemini.generate'), body);
    expect(texts).toEqual(['be kind', 'first', 'second']);
    expect(body).toEqual(before);
    expect(mapped.systemInstruction).toEqual({ parts: [{ text: 'BE KIND' }] });
    const contents = mapped.contents as Json[];
    expect(contents[0]!.parts).toEqual([{ text: 'FIRST' }, { inlineData: { mimeType: 'image/png', data: 'AAAA' } }]);
    expect(contents[1]).toBe((body.contents as Json[])[1]);
    expect((contents[2]!.parts as Json[])[1]).toEqual({ text: 'SECOND' });
    expect(mapped.generationConfig).toBe(body.generationConfig);
  });
});

describe('OpenAI Embeddings', () => {
  it('visits a string input or each string of a list; leaves token ids', () => {
    const embeddings = adapterFor('openai.embeddings');
    const one = visit(embeddings, { model: 'text-embedding-3-small', input: 'mail me at a@b.example' });
    expect(one.texts).toEqual(['mail me at a@b.example']);
    expect(one.mapped.input).toBe('MAIL ME AT A@B.EXAMPLE');
    const list = { model: 'm', input: ['first', 'second'] };
    const before = copy(list);
    const many = visit(embeddings, list);
    expect(many.texts).toEqual(['first', 'second']);
    expect(many.mapped.input).toEqual(['FIRST', 'SECOND']);
    expect(list).toEqual(before);
    const ids = { model: 'm', input: [[1, 2, 3]] };
    expect(visit(embeddings, ids)).toEqual({ texts: [], mapped: ids });
  });
});

describe('text in any script', () => {
  it('passes Japanese, Arabic and emoji through unchanged when the map keeps them', () => {
    const text = 'こんにちは、世界。مرحبا بالعالم 👋🏽';
    const body: Json = { model: 'm', messages: [{ role: 'user', content: text }] };
    const seen: string[] = [];
    const mapped = adapterFor('openai.chat').mapPromptText!(body, (value) => {
      seen.push(value);
      return value;
    });
    expect(seen).toEqual([text]);
    expect(mapped).toBe(body);
  });
});
