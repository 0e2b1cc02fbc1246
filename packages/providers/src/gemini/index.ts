// Google Gemini's native API (`models/{model}:generateContent` / `:streamGenerateContent`): shape, estimate, usage, ending.
import type { ReportedUsage, TokenUsage } from '@tollgate/core';
import type { CallRequest, CallShape } from '@tollgate/core/provider-call';
import type { ProviderAdapter } from '../adapter.js';
import type { RequestCounter } from '../counter.js';
import { asArray, isObject, parseJson, positiveInteger, tokenCount } from '../json.js';
import type { Json } from '../json.js';
import { MESSAGE_OVERHEAD } from '../openai-framing.js';
import { mapEach, mapField, withField } from '../prompt-text.js';
import type { TextMap } from '../prompt-text.js';
import { checkPositiveInteger } from '../request-checks.js';
import { countedOutput, OutputText, sseEvent } from '../usage.js';
import type { UsageReader } from '../usage.js';
import { GEMINI_COUNT_ACTION, GEMINI_ROUTE, GEMINI_STREAM_ACTION, GEMINI_UPSTREAM } from './route.js';

export { GEMINI_ACTIONS, GEMINI_STREAM_ACTION } from './route.js';

function param(request: CallRequest, name: string): string | undefined {
  const value = request.params?.[name];
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

function countParts(counter: RequestCounter, parts: unknown): number {
  let tokens = 0;
  for (const part of asArray(parts)) {
    if (!isObject(part)) continue;
    if (typeof part.text === 'string') tokens += counter.text(part.text);
    else if (isObject(part.inlineData) && String(part.inlineData.mimeType ?? '').startsWith('image/'))
      tokens += counter.image();
    else {
      // Video and PDFs become more tokens than their bytes (frames, page images).
      if (isObject(part.inlineData) && /^(video\/|application\/pdf)/.test(String(part.inlineData.mimeType ?? '')))
        counter.pullsContent();
      // Function calls and results, audio: their JSON (base64 included) bounds them from above; files by URI do not.
      tokens += counter.part(part);
    }
  }
  return tokens;
}

/** A content's text parts through `map`; thoughts (the model's own, signed) and other parts stay. */
function mapContent(content: unknown, map: TextMap): unknown {
  return mapField(content, 'parts', (parts) =>
    mapEach(parts, (part) =>
      isObject(part) && typeof part.text === 'string' && part.thought !== true
        ? withField(part, 'text', map(part.text))
        : part,
    ),
  );
}

/** The system instruction and every content's text through `map` (see `ProviderAdapter.mapPromptText`). */
function mapGeneratePromptText(body: Json, map: TextMap): Json {
  const withSystem = withField(body, 'systemInstruction', mapContent(body.systemInstruction, map));
  return withField(
    withSystem,
    'contents',
    mapEach(body.contents, (content) => mapContent(content, map)),
  );
}

function countGenerateRequest(counter: RequestCounter, body: Json): number {
  let tokens = 0;
  if (isObject(body.systemInstruction)) tokens += MESSAGE_OVERHEAD + countParts(counter, body.systemInstruction.parts);
  for (const content of asArray(body.contents)) {
    if (isObject(content)) tokens += MESSAGE_OVERHEAD + countParts(counter, content.parts);
  }
  for (const tool of asArray(body.tools)) {
    // Search, URL context and code execution feed what they find back as input.
    if (isObject(tool) && Object.keys(tool).some((name) => name !== 'functionDeclarations')) counter.pullsContent();
    tokens += counter.text(tool);
  }
  // Cached content is billed as input and held by the provider.
  if (body.cachedContent !== undefined) counter.pullsContent();
  return counter.approximate(tokens);
}

/** `usageMetadata`: thoughts are billed as output but reported apart from the candidates. */
function geminiUsage(metadata: Json): TokenUsage {
  const thoughts = tokenCount(metadata.thoughtsTokenCount);
  return {
    inputTokens: tokenCount(metadata.promptTokenCount) + tokenCount(metadata.toolUsePromptTokenCount),
    cachedInputTokens: tokenCount(metadata.cachedContentTokenCount),
    cacheWriteTokens: 0,
    outputTokens: tokenCount(metadata.candidatesTokenCount) + thoughts,
    reasoningTokens: thoughts,
  };
}

/** Reads a chunk's candidates into `output`; notes each index in `seen`, true once it finished. */
function collectCandidates(output: OutputText, candidates: unknown, seen: Map<number, boolean>): boolean {
  let finished = false;
  for (const candidate of asArray(candidates)) {
    if (!isObject(candidate)) continue;
    const index = typeof candidate.index === 'number' ? candidate.index : 0;
    const done = typeof candidate.finishReason === 'string' && candidate.finishReason.length > 0;
    if (done) finished = true;
    if (seen.get(index) !== true) seen.set(index, done);
    if (!isObject(candidate.content)) continue;
    for (const part of asArray(candidate.content.parts)) {
      if (!isObject(part)) continue;
      output.add(part.text);
      if (isObject(part.functionCall)) output.add(JSON.stringify(part.functionCall));
    }
  }
  return finished;
}

/** Where a chunk, and a JSON answer, hold their usage. */
const USAGE_PATH = ['usageMetadata'] as const;

function createGenerateReader(): UsageReader {
  const output = new OutputText();
  let usage: TokenUsage | undefined;
  let finished = false;
  let responseId: unknown;
  /** Candidate indexes seen, true once finished (a stream with `candidateCount` > 1 ends each one still open). */
  const candidates = new Map<number, boolean>();
  const read = (chunk: Json) => {
    if (typeof chunk.modelVersion === 'string') reader.model = chunk.modelVersion;
    if (responseId === undefined && typeof chunk.responseId === 'string') responseId = chunk.responseId;
    if (collectCandidates(output, chunk.candidates, candidates)) finished = true;
    // Each streamed chunk repeats the running totals: assign, never add.
    if (isObject(chunk.usageMetadata)) usage = geminiUsage(chunk.usageMetadata);
  };
  const reader: UsageReader = {
    api: 'gemini.generate',
    model: undefined,
    output,
    finalUsageAt: undefined,
    onEvent(_event, data) {
      reader.finalUsageAt = undefined;
      const chunk = parseJson(data);
      if (!isObject(chunk)) return false;
      read(chunk);
      // Every chunk may repeat the running totals: the final ones come with (or after) the chunk that finishes.
      if (finished && isObject(chunk.usageMetadata)) reader.finalUsageAt = USAGE_PATH;
      return false;
    },
    onJson(body) {
      // A JSON answer, or a stream asked for without alt=sse (a JSON array of chunks).
      if (isObject(body)) read(body);
      else for (const chunk of asArray(body)) if (isObject(chunk)) read(chunk);
      if (usage) finished = true;
    },
    onUnparsed: (text) => output.add(text),
    result(countOutput) {
      if (usage && finished) return { usage, source: 'provider' };
      const counted = countedOutput(output, countOutput);
      if (!usage) return counted;
      // Cut mid-stream: the prompt is known, the output is what passed.
      return {
        usage: { ...usage, outputTokens: Math.max(usage.outputTokens, counted?.usage.outputTokens ?? 0) },
        source: 'counted',
      };
    },
    ending({ inputTokens, outputTokens }) {
      const open: number[] = [];
      for (const [index, finished] of candidates) if (!finished) open.push(index);
      if (candidates.size === 0) open.push(0);
      return sseEvent({
        candidates: open.map((index) => ({
          content: { role: 'model', parts: [{ text: '' }] },
          finishReason: 'MAX_TOKENS',
          index,
        })),
        usageMetadata: {
          promptTokenCount: inputTokens,
          candidatesTokenCount: outputTokens,
          totalTokenCount: inputTokens + outputTokens,
        },
        modelVersion: reader.model ?? '',
        ...(responseId === undefined ? {} : { responseId }),
      });
    },
  };
  return reader;
}

/** What a count request counts: the whole generation request it wraps (`generateContentRequest`), else its own `contents`. */
function countedRequest(body: Json): Json {
  return isObject(body.generateContentRequest) ? body.generateContentRequest : body;
}

/**
 * Gemini's native API. The model and the method are in the path (`models/{model}:{action}`):
 * routes declare them as the params `model` and `action` (SDK routes may put `model` in the body
 * they build instead). The cap is `generationConfig.maxOutputTokens`, choices
 * `generationConfig.candidateCount`, usage `usageMetadata`.
 */
export const gemini: ProviderAdapter = {
  api: 'gemini.generate',
  provider: 'google',
  // Gemini's own API (AI Studio), not Vertex AI's.
  genAi: { operation: 'generate_content', provider: 'gcp.gemini' },
  read(request: CallRequest): CallShape {
    const body = isObject(request.body) ? request.body : {};
    const config = isObject(body.generationConfig) ? body.generationConfig : {};
    const bodyModel = typeof body.model === 'string' && body.model.length > 0 ? body.model : undefined;
    const action = param(request, 'action');
    return {
      model: param(request, 'model') ?? bodyModel,
      outputCap: positiveInteger(config.maxOutputTokens),
      // The path's method decides what the provider answers; a body's `stream` counts only on routes without one (SDK routes).
      stream: action !== undefined ? action === GEMINI_STREAM_ACTION : body.stream === true,
      choices: positiveInteger(config.candidateCount) ?? 1,
    };
  },
  writeOutputCap(body, cap) {
    const config = isObject(body.generationConfig) ? body.generationConfig : {};
    body.generationConfig = Object.assign(config, { maxOutputTokens: cap });
  },
  writeModel(body, model) {
    // The native API names the model in the path (the forwarder builds it from the call's model).
    if (typeof body.model === 'string') body.model = model;
  },
  readUsage(response): ReportedUsage | undefined {
    if (!isObject(response) || !isObject(response.usageMetadata)) return undefined;
    const usage: ReportedUsage = geminiUsage(response.usageMetadata);
    if (typeof response.modelVersion === 'string') usage.model = response.modelVersion;
    return usage;
  },
  countInput: countGenerateRequest,
  mapPromptText: mapGeneratePromptText,
  requestStreamUsage: () => false,
  // The upstream's path asks for the stream (`streamGenerateContent?alt=sse`): the body stays as it is.
  streamRequest: (body) => body,
  createReader: () => createGenerateReader(),
  answerUsageFields: ['modelVersion', 'usageMetadata'],
  usageField: 'usageMetadata',
  label: 'Gemini',
  family: 'generate',
  route: GEMINI_ROUTE,
  upstream: GEMINI_UPSTREAM,
  checkRequest(body) {
    if (!Array.isArray(body.contents)) return { param: 'contents', message: 'contents must be an array of contents.' };
    const config = body.generationConfig;
    if (config === undefined || config === null) return undefined;
    if (!isObject(config)) return { param: 'generationConfig', message: 'generationConfig must be an object.' };
    // Both bound the estimate (cap x candidates).
    return (
      checkPositiveInteger(config, 'maxOutputTokens', 'generationConfig.') ??
      checkPositiveInteger(config, 'candidateCount', 'generationConfig.')
    );
  },
  // `models/{model}:countTokens` on the same route: `{ contents }` or `{ generateContentRequest }`, answered `{ totalTokens }`.
  countTokens: {
    method: GEMINI_COUNT_ACTION,
    upstreamPath: (model) => `/models/${model}:${GEMINI_COUNT_ACTION}`,
    request: countedRequest,
    checkRequest(body) {
      const wrapped = body.generateContentRequest;
      if (wrapped !== undefined && !isObject(wrapped))
        return { param: 'generateContentRequest', message: 'generateContentRequest must be an object.' };
      if (!Array.isArray(countedRequest(body).contents))
        return {
          param: wrapped === undefined ? 'contents' : 'generateContentRequest.contents',
          message: 'contents must be an array of contents.',
        };
      return undefined;
    },
    answer: (inputTokens) => ({ totalTokens: inputTokens }),
  },
  errorBody: ({ status, message }) => ({
    error: { code: status, message, status: GOOGLE_STATUS[status] ?? 'UNKNOWN' },
  }),
};

/** Google's status names for HTTP statuses. */
const GOOGLE_STATUS: Readonly<Record<number, string>> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  429: 'RESOURCE_EXHAUSTED',
  500: 'INTERNAL',
  502: 'UNAVAILABLE',
  503: 'UNAVAILABLE',
};
