// OpenAI Embeddings (`POST /v1/embeddings`): request checks, the input count, usage, end to end in one adapter.
import type { ReportedUsage, TokenUsage } from '@tollgate/core';
import type { CallRequest, CallShape } from '@tollgate/core/provider-call';
import type { ProviderAdapter, RequestProblem } from '../adapter.js';
import type { RequestCounter } from '../counter.js';
import { bodyModel, isObject, parseJson, tokenCount } from '../json.js';
import type { Json } from '../json.js';
import { OPENAI_UPSTREAM } from '../openai-chat/upstreams.js';
import { openAiUsage } from '../openai-framing.js';
import { checkPositiveInteger } from '../request-checks.js';
import { mapEach, mapString, withField } from '../prompt-text.js';
import { OutputText } from '../usage.js';
import type { UsageReader } from '../usage.js';

/** The most inputs one request may hold (OpenAI refuses more). */
const MAX_EMBEDDING_INPUTS = 2048;

/**
 * Every top-level field OpenAI's embeddings API reads: it refuses any other (400 "Unrecognized request argument"), as
 * the mock does. The gateway leaves that to the upstream: a self-hosted server may read more.
 */
const EMBEDDINGS_FIELDS: readonly string[] = ['model', 'input', 'dimensions', 'encoding_format', 'user'];

const ENCODING_FORMATS: readonly string[] = ['float', 'base64'];

const isTokenId = (value: unknown): boolean => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

/** A list of token ids, non-empty; `where` names it in the problem. */
function tokenListProblem(list: unknown[], where: string): RequestProblem | undefined {
  if (list.length === 0) return { param: where, message: `${where} must not be an empty array of tokens.` };
  const bad = list.findIndex((token) => !isTokenId(token));
  return bad < 0
    ? undefined
    : { param: `${where}[${bad}]`, message: `${where}[${bad}] must be a token id (an integer >= 0).` };
}

/**
 * `input` as OpenAI takes it: a string, an array of strings, an array of token ids, or an array of arrays of token
 * ids; never empty, at most 2,048 inputs, one form per request.
 */
function inputProblem(input: unknown): RequestProblem | undefined {
  const shape =
    'input must be a string, an array of strings, an array of token ids, or an array of arrays of token ids.';
  if (typeof input === 'string')
    return input.length === 0 ? { param: 'input', message: 'input must not be an empty string.' } : undefined;
  if (!Array.isArray(input) || input.length === 0) return { param: 'input', message: shape };
  if (input.length > MAX_EMBEDDING_INPUTS)
    return { param: 'input', message: `input may hold at most ${MAX_EMBEDDING_INPUTS} inputs; got ${input.length}.` };
  const first: unknown = input[0];
  if (typeof first === 'number') return tokenListProblem(input, 'input');
  for (let i = 0; i < input.length; i++) {
    const item: unknown = input[i];
    if (typeof first === 'string') {
      if (typeof item !== 'string') return { param: `input[${i}]`, message: `${shape} input[${i}] is not a string.` };
      if (item.length === 0) return { param: `input[${i}]`, message: `input[${i}] must not be an empty string.` };
    } else if (Array.isArray(first)) {
      if (!Array.isArray(item))
        return { param: `input[${i}]`, message: `${shape} input[${i}] is not an array of token ids.` };
      const problem = tokenListProblem(item, `input[${i}]`);
      if (problem) return problem;
    } else {
      return { param: 'input[0]', message: shape };
    }
  }
  return undefined;
}

/**
 * Input tokens of an embeddings request: each string counted with the model's tokenizer (no framing: OpenAI bills
 * the sum of its inputs' tokens), each token array its length.
 */
function countEmbeddingsRequest(counter: RequestCounter, body: Json): number {
  const input = body.input;
  const items: unknown[] = Array.isArray(input) ? input : [input];
  let tokens = 0;
  let ids = 0;
  for (const item of items) {
    if (typeof item === 'string') tokens += counter.text(item);
    else if (Array.isArray(item)) ids += item.length;
    else if (typeof item === 'number') ids++;
  }
  // Token ids are the provider's own tokens: counted as they are, never scaled.
  return counter.approximate(tokens) + ids;
}

/** An embeddings answer's usage: input only (`prompt_tokens`, else `total_tokens`); an embedding has no output. */
function embeddingsUsage(usage: Json): TokenUsage {
  return {
    ...openAiUsage(usage),
    inputTokens: tokenCount(usage.prompt_tokens ?? usage.total_tokens),
    outputTokens: 0,
    reasoningTokens: 0,
  };
}

function readEmbeddingsAnswer(response: unknown): ReportedUsage | undefined {
  if (!isObject(response) || !isObject(response.usage)) return undefined;
  const usage: ReportedUsage = embeddingsUsage(response.usage);
  if (typeof response.model === 'string') usage.model = response.model;
  return usage;
}

/** Reads an embeddings answer: always JSON (the API has no stream), its usage at the top level. */
function createEmbeddingsReader(): UsageReader {
  let usage: TokenUsage | undefined;
  const reader: UsageReader = {
    api: 'openai.embeddings',
    model: undefined,
    // Vectors are not text anyone is billed for: nothing is ever added.
    output: new OutputText(),
    // The API has no stream.
    finalUsageAt: undefined,
    onEvent: (_event, data) => {
      reader.onJson(parseJson(data));
      return false;
    },
    onJson(body) {
      const read = readEmbeddingsAnswer(body);
      if (!read) return;
      if (read.model !== undefined) reader.model = read.model;
      usage = embeddingsUsage((body as Json).usage as Json);
    },
    onUnparsed: () => undefined,
    // Without usage (a server that reports none), the meter bills the estimate: the exact count of the input.
    result: () => (usage ? { usage, source: 'provider' } : undefined),
    ending: () => '',
  };
  return reader;
}

/**
 * OpenAI's embeddings API: `model`, `input` (a string, strings, token ids or arrays of token ids), `dimensions`,
 * `encoding_format` (`float` or `base64`), `user`. Metered on input tokens only: the estimate counts the input
 * exactly as OpenAI bills it (cl100k_base for its embedding models; token arrays by their length), which budgets
 * reserve as it is, and there is no output (the output cap reads 0, so nothing is reserved for it). Never streamed. Served at `/v1/embeddings`, to an
 * upstream of the gateway's own `openai` kind at `<baseUrl>/embeddings`; only models whose catalogue row says
 * `kind: 'embedding'` (text-embedding-3-small, -3-large, ada-002, or a config model) are accepted.
 */
export const openAiEmbeddings: ProviderAdapter = {
  api: 'openai.embeddings',
  provider: 'openai',
  genAi: { operation: 'embeddings', provider: 'openai' },
  read({ body }: CallRequest): CallShape {
    return { model: bodyModel(body), outputCap: 0, stream: false, choices: 1 };
  },
  // No output, so no cap to write.
  writeOutputCap: () => undefined,
  writeModel(body, model) {
    body.model = model;
  },
  readUsage: readEmbeddingsAnswer,
  endUserField: 'user',
  countInput: countEmbeddingsRequest,
  // OpenAI bills the sum of its inputs' cl100k_base tokens: the count is the bill, and budgets reserve just that.
  billsCountedInput: true,
  // The texts to embed: a string, or each string of an array (token ids are not text).
  mapPromptText: (body, map) =>
    withField(
      body,
      'input',
      typeof body.input === 'string' ? map(body.input) : mapEach(body.input, (item) => mapString(item, map)),
    ),
  requestStreamUsage: () => false,
  createReader: () => createEmbeddingsReader(),
  answerUsageFields: ['model', 'usage'],
  usageField: 'usage',
  label: 'OpenAI',
  family: 'embeddings',
  modelKind: 'embedding',
  route: { path: '/v1/embeddings' },
  upstream: { ...OPENAI_UPSTREAM, path: '/embeddings' },
  requestFields: EMBEDDINGS_FIELDS,
  checkRequest(body) {
    const problem = inputProblem(body.input) ?? checkPositiveInteger(body, 'dimensions');
    if (problem) return problem;
    const format = body.encoding_format;
    if (format !== undefined && !ENCODING_FORMATS.includes(format as string))
      return { param: 'encoding_format', message: 'encoding_format must be "float" or "base64".' };
    if (body.user !== undefined && typeof body.user !== 'string')
      return { param: 'user', message: 'user must be a string.' };
    return undefined;
  },
};
