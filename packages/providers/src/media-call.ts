// What OpenAI's audio and image APIs share: an adapter whose size is what the request asks for (no output cap), and a
// reader of the usage its answer reports, else of what its request asked for.
import type { MediaUsage } from '@tollgate/core/costs';
import type { CallRequest, CallShape } from '@tollgate/core/provider-call';
import type { ModelKind } from '@tollgate/core/costs';
import type { MockAnswer, ProviderAdapter, RequestProblem } from './adapter.js';
import type { RequestCounter } from './counter.js';
import { asString, bodyModel, isObject, parseJson } from './json.js';
import type { Json } from './json.js';
import { OPENAI_UPSTREAM } from './openai-chat/upstreams.js';
import { withField } from './prompt-text.js';
import type { TextMap } from './prompt-text.js';
import { OutputText } from './usage.js';
import type { UsageReader } from './usage.js';

/** A media call's usage: text tokens in and out, and its media (see core's `MediaUsage`). */
export interface MediaCallUsage {
  input: number;
  output: number;
  media: MediaUsage;
}

/** How one answer of a media API is read (a fresh one per answer). */
interface MediaAnswerReading {
  /** Reads one parsed stream event; true when it carried the answer's final usage (its `usage` gets `cost_usd`). */
  event(data: Json): boolean;
  /** Reads a whole JSON answer. */
  json(body: Json): void;
  /** What the answer reported, or undefined when it reported nothing (text formats, audio bytes). */
  reported(): MediaCallUsage | undefined;
}

/** What one OpenAI media API is (see `mediaAdapter`). */
interface MediaApi {
  readonly api: 'openai.speech' | 'openai.images' | 'openai.transcriptions';
  readonly operation: string;
  /** The gateway's path (`/v1/audio/speech`); the upstream's is the same after OpenAI's `/v1`. */
  readonly path: string;
  readonly modelKind: ModelKind;
  /** The prompt's text fields (counted as input, checked and masked by guardrails). */
  readonly textFields: readonly string[];
  /** True when the body asks for a stream. */
  stream(body: Json): boolean;
  /** The media the request asks for at most: what it is reserved at, and billed when its answer reports nothing. */
  media(body: Json): MediaUsage;
  /** A fresh reading of one answer, for the request as sent. */
  reading(request: Json): MediaAnswerReading;
  checkRequest(body: Json): RequestProblem | undefined;
  readonly mockAnswer: (body: Json) => MockAnswer;
  readonly endUserField?: string;
  /** `multipart`: the API takes uploads; its text fields (the model, the prompt) are rewritten in the form as changed. */
  readonly requestForm?: 'multipart';
}

/** What an answer that reports nothing is billed: what its request asked for, a transcript's bound as its output. */
function askedUsage(asked: MediaUsage): MediaCallUsage {
  const { transcriptTokens, ...media } = asked;
  return { input: 0, output: transcriptTokens ?? 0, media };
}

function mediaReader(api: MediaApi, request: Json): UsageReader {
  const reading = api.reading(request);
  const asked = api.media(request);
  const reader: UsageReader = {
    api: api.api,
    model: undefined,
    // Media are not text: nothing is counted, so a stream is never cut for its output (its size is asked for).
    output: new OutputText(),
    finalUsageAt: undefined,
    onEvent(_event, data) {
      const parsed = parseJson(data);
      reader.finalUsageAt = isObject(parsed) && reading.event(parsed) ? ['usage'] : undefined;
      return false;
    },
    onJson(body) {
      if (isObject(body)) reading.json(body);
    },
    onUnparsed: () => undefined,
    result() {
      const reported = reading.reported();
      const usage = reported ?? askedUsage(asked);
      return {
        usage: {
          inputTokens: usage.input,
          cachedInputTokens: 0,
          cacheWriteTokens: 0,
          outputTokens: usage.output,
          reasoningTokens: 0,
          media: usage.media,
        },
        source: reported ? 'provider' : 'counted',
      };
    },
    ending: () => '',
  };
  return reader;
}

/** `body` with each of `fields` that is a string passed through `map`. */
function mapFields(body: Json, fields: readonly string[], map: TextMap): Json {
  let mapped = body;
  for (const field of fields)
    if (typeof mapped[field] === 'string') mapped = withField(mapped, field, map(mapped[field]));
  return mapped;
}

/**
 * The adapter of one OpenAI media API: no output cap (the media asked for are the call's size, reserved whole), the
 * prompt's text fields counted as input, usage read by `api.reading`, served at `api.path` and forwarded to OpenAI's.
 */
export function mediaAdapter(api: MediaApi): ProviderAdapter {
  return {
    api: api.api,
    provider: 'openai',
    genAi: { operation: api.operation, provider: 'openai' },
    read({ body }: CallRequest): CallShape {
      const json = isObject(body) ? body : {};
      return { model: bodyModel(body), outputCap: 0, stream: api.stream(json), choices: 1, media: api.media(json) };
    },
    // Nothing to cap: the size is what the request asks for.
    writeOutputCap: () => undefined,
    writeModel(body, model) {
      body.model = model;
    },
    readUsage(response) {
      if (!isObject(response)) return undefined;
      const reading = api.reading({});
      reading.json(response);
      const reported = reading.reported();
      return reported && { inputTokens: reported.input, outputTokens: reported.output, media: reported.media };
    },
    ...(api.endUserField ? { endUserField: api.endUserField } : {}),
    countInput: (counter: RequestCounter, body: Json) =>
      counter.approximate(api.textFields.reduce((sum, field) => sum + counter.text(asString(body[field])), 0)),
    // A form's masked text fields are written back into it as it goes upstream (`withFormFields`).
    mapPromptText: (body: Json, map: TextMap) => mapFields(body, api.textFields, map),
    requestStreamUsage: () => false,
    createReader: (options) => mediaReader(api, isObject(options?.request) ? options.request : {}),
    usageField: 'usage',
    label: 'OpenAI',
    modelKind: api.modelKind,
    route: { path: api.path },
    upstream: { ...OPENAI_UPSTREAM, path: api.path.replace(/^\/v1/, '') },
    ...(api.requestForm ? { requestForm: api.requestForm } : {}),
    checkRequest: api.checkRequest,
    mockAnswer: api.mockAnswer,
  };
}
