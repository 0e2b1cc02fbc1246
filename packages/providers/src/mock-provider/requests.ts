// What the mock reads of a request, per family: the checks the provider would make, and the reply's plan (model, stream,
// usage wanted, input tokens, the reply). A refused request throws the error the provider would answer.
import type { Request } from 'express';
import type { ProviderAdapter } from '../adapter.js';
import type { PlainAnswer } from '../answer-types.js';
import { GEMINI_ACTIONS, GEMINI_STREAM_ACTION } from '../gemini/index.js';
import { splitGeminiTarget } from '../gemini/route.js';
import { isObject } from '../json.js';
import type { Json } from '../json.js';
import { embeddingsAnswer } from '../openai-embeddings/answer.js';
import { countMockTokens, countPromptTokens, DEFAULT_EMBEDDING_DIMENSIONS, mockEmbedding } from './reply.js';
import type { MockReply } from './reply.js';

/** A body the provider refuses with a 400 naming `param`. */
export class MockBadRequest extends Error {
  constructor(
    readonly param: string,
    message: string,
  ) {
    super(message);
  }
}

/** A field the API does not read, when it refuses those (its adapter's `requestFields`): the provider's 422. */
export class MockUnknownField extends Error {
  constructor(readonly param: string) {
    super(`Extra inputs are not permitted: ${param}`);
  }
}

/** A method the mock does not serve: 404. */
export class MockNotFound extends Error {}

function optionalPositiveInteger(body: Json, field: string): number | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0)
    throw new MockBadRequest(field, `${field} must be a positive integer`);
  return value;
}

function requireModel(body: Json): string {
  if (typeof body.model !== 'string' || body.model.length === 0)
    throw new MockBadRequest('model', 'model is required and must be a string');
  return body.model;
}

function requireStreamFlag(body: Json): boolean {
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean')
    throw new MockBadRequest('stream', 'stream must be a boolean');
  return body.stream === true;
}

function requireMessages(body: Json): unknown[] {
  if (!Array.isArray(body.messages) || body.messages.length === 0)
    throw new MockBadRequest('messages', 'messages must be a non-empty array');
  body.messages.forEach((message, i) => {
    if (!isObject(message) || typeof message.role !== 'string')
      throw new MockBadRequest(`messages[${i}]`, `messages[${i}] must be an object with a role`);
  });
  return body.messages;
}

function refuseUnknownFields(adapter: ProviderAdapter, body: Json): void {
  const fields = adapter.requestFields;
  if (fields) for (const field of Object.keys(body)) if (!fields.includes(field)) throw new MockUnknownField(field);
}

export interface Plan {
  model: string;
  stream: boolean;
  includeUsage: boolean;
  /** The API sends its stream's usage unasked, on the chunk that finishes the answer (a chat dialect's `streamUsage`). */
  usageInline?: boolean;
  inputTokens: number;
  reply: MockReply;
}

/** The plan's reply as a plain answer, for its family to write. */
export function plainAnswer(plan: Plan): PlainAnswer {
  const { model, inputTokens, reply } = plan;
  return { model, inputTokens, text: reply.text, outputTokens: reply.outputTokens, truncated: reply.truncated };
}

/** The reply to a request naming output cap `cap`. */
export type ReplyFor = (cap: number | undefined) => MockReply;

/**
 * Gemini names the model and the method in the path. Behind the proxy (in-process) the model is
 * the declared call's: a downgrade changes the model the call runs with, never the client's path.
 */
function planGeminiRequest(req: Request, body: Json, reply: ReplyFor): Plan {
  // The mock generates; it does not count (`countTokens` is a 404 here, as any other method).
  const target = splitGeminiTarget(req.params.target, GEMINI_ACTIONS);
  if (!target || target.model === '') throw new MockNotFound();
  if (!Array.isArray(body.contents) || body.contents.length === 0)
    throw new MockBadRequest('contents', 'contents must be a non-empty array');
  const contents = body.contents.map((content: unknown) => (isObject(content) ? content.parts : undefined));
  const config = isObject(body.generationConfig) ? body.generationConfig : {};
  const cap = optionalPositiveInteger(config, 'maxOutputTokens');
  const system = isObject(body.systemInstruction) ? body.systemInstruction.parts : undefined;
  return {
    model: req.tollgate?.call?.model ?? target.model,
    stream: target.action === GEMINI_STREAM_ACTION,
    includeUsage: true,
    inputTokens: countPromptTokens({ messages: contents, system }),
    reply: reply(cap),
  };
}

function planChatRequest(adapter: ProviderAdapter, body: Json, reply: ReplyFor): Plan {
  const model = requireModel(body);
  const stream = requireStreamFlag(body);
  const messages = requireMessages(body);
  const cap = optionalPositiveInteger(body, 'max_completion_tokens') ?? optionalPositiveInteger(body, 'max_tokens');
  const options = body.stream_options;
  const usageInline = adapter.streamUsage === 'always';
  const includeUsage = usageInline || (isObject(options) && options.include_usage === true);
  return { model, stream, includeUsage, usageInline, inputTokens: countPromptTokens({ messages }), reply: reply(cap) };
}

function planResponsesRequest(body: Json, reply: ReplyFor): Plan {
  const model = requireModel(body);
  const stream = requireStreamFlag(body);
  const input = body.input;
  if (typeof input !== 'string' && !Array.isArray(input))
    throw new MockBadRequest('input', 'input must be a string or an array');
  const cap = optionalPositiveInteger(body, 'max_output_tokens');
  const inputTokens = countPromptTokens({ input, instructions: body.instructions });
  return { model, stream, includeUsage: true, inputTokens, reply: reply(cap) };
}

function planMessagesRequest(body: Json, reply: ReplyFor): Plan {
  const model = requireModel(body);
  const stream = requireStreamFlag(body);
  const messages = requireMessages(body);
  const cap = optionalPositiveInteger(body, 'max_tokens');
  if (cap === undefined) throw new MockBadRequest('max_tokens', 'max_tokens: Field required');
  const inputTokens = countPromptTokens({ messages, system: body.system });
  return { model, stream, includeUsage: true, inputTokens, reply: reply(cap) };
}

/** The plan of a generation request of `adapter`'s family (not embeddings: see embeddingsReply). */
export function planRequest(adapter: ProviderAdapter, req: Request, body: Json, reply: ReplyFor): Plan {
  const family = adapter.family;
  if (family === 'generate') return planGeminiRequest(req, body, reply);
  refuseUnknownFields(adapter, body);
  if (family === 'chat') return planChatRequest(adapter, body, reply);
  if (family === 'responses') return planResponsesRequest(body, reply);
  return planMessagesRequest(body, reply);
}

/** The inputs of an embeddings request as the texts the mock embeds (token arrays as their JSON), and their mock tokens. */
function embeddingInputs(input: unknown): { texts: string[]; tokens: number } {
  const invalid = () => new MockBadRequest('input', "'$.input' is invalid. Please check the API reference.");
  if (typeof input === 'string') {
    if (input.length === 0) throw invalid();
    return { texts: [input], tokens: countMockTokens(input) };
  }
  if (!Array.isArray(input) || input.length === 0) throw invalid();
  // One array of token ids is one input.
  const items: unknown[] = input.every((item) => typeof item === 'number') ? [input] : input;
  let tokens = 0;
  const texts = items.map((item) => {
    if (typeof item === 'string' && item.length > 0) {
      tokens += countMockTokens(item);
      return item;
    }
    if (Array.isArray(item) && item.length > 0 && item.every((token) => Number.isSafeInteger(token))) {
      tokens += item.length;
      return JSON.stringify(item);
    }
    throw invalid();
  });
  return { texts, tokens };
}

/** The embeddings answer: a deterministic unit vector per input, as floats or as base64 of little-endian float32. */
export function embeddingsReply(adapter: ProviderAdapter, body: Json): Json {
  refuseUnknownFields(adapter, body);
  const model = requireModel(body);
  const dimensions = optionalPositiveInteger(body, 'dimensions') ?? DEFAULT_EMBEDDING_DIMENSIONS;
  const format = body.encoding_format ?? 'float';
  if (format !== 'float' && format !== 'base64')
    throw new MockBadRequest('encoding_format', "'encoding_format' must be one of 'float', 'base64'");
  const { texts, tokens } = embeddingInputs(body.input);
  return embeddingsAnswer(
    model,
    texts.map((text) => mockEmbedding(text, dimensions)),
    format,
    tokens,
  );
}
