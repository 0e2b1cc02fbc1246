// The provider adapter: everything specific to one provider API, behind one object.
import type { CallAdapter } from '@tollgate/core/provider-call';
import type { ModelKind } from '@tollgate/core/costs';
import type { RequestCounter } from './counter.js';
import type { EncodingName } from './tokenizer.js';
import type { Json } from './json.js';
import type { TextMap } from './prompt-text.js';
import type { UsageReader } from './usage.js';

/**
 * One per API. Core's part (`CallAdapter`: read the request, write model and cap, read an SDK
 * answer's usage) lets the request context own the call's state; the rest lets the meter estimate
 * the request, read usage as the answer streams past, and end a stream cut at its grant.
 */
export interface ProviderAdapter extends CallAdapter {
  /**
   * How OpenTelemetry's GenAI semantic conventions name this API's calls: `gen_ai.operation.name`
   * and `gen_ai.provider.name` (absent: the provider that served the call is named, as for a
   * self-hosted server). The meter's span reads it. @default `{ operation: 'chat' }`
   */
  readonly genAi?: { readonly operation: string; readonly provider?: string };
  /** Input tokens of a request body, framed the way this API renders it into the prompt. */
  countInput(counter: RequestCounter, body: Json): number;
  /**
   * `body` with every prompt text its caller wrote passed through `map`, in prompt order: system and
   * developer prompts, the messages' text (a string, or its text parts) whatever their role, and
   * the text of tool results. Not tool definitions, tool-call arguments, names or ids, reasoning
   * and thinking (signed by the provider), images, audio or files. Copy on write: the objects on the
   * way to a changed text are copies, all else is shared, and `body` itself comes back when no text
   * changed. Guardrails read, refuse and mask prompts through it, never through field names.
   * @default none: guardrails refuse this API's calls rather than let their text through unchecked
   */
  mapPromptText?(body: Json, map: TextMap): Json;
  /**
   * The provider bills input exactly as `countInput` counts it: no framing, no prompt of its own (embeddings). When the
   * model's tokenizer is the provider's own (`ownTokenizer`) and every string was counted exactly, the estimate's
   * input is then its own bound, and budgets reserve it as it is rather than its text's bytes. @default false
   */
  readonly billsCountedInput?: boolean;
  /**
   * Makes a streamed answer report its usage (OpenAI chat: `stream_options.include_usage`);
   * returns true when it added something the client did not ask for (the meter strips it).
   */
  requestStreamUsage(body: Json): boolean;
  /**
   * The same call asked as a stream: a copy of `body` with the API's stream flag set and its usage asked for (what
   * `requestStreamUsage` adds), or `body` itself where the upstream's path says it (Gemini). A gateway sends a JSON
   * call so, holds it to its grant as a stream and assembles its JSON answer (docs/architecture.md, "What a JSON
   * answer can spend"). @default none: the API's answers do not stream (embeddings)
   */
  streamRequest?(body: Json): Json;
  /**
   * A reader for one answer. `stripAddedUsage`: the usage chunk `requestStreamUsage` added is
   * flagged. `request`: the body as sent, for an ending that matches what the client asked for.
   */
  createReader(options?: { stripAddedUsage?: boolean; request?: Json }): UsageReader;
  /**
   * The top-level fields of a whole JSON answer that carry its usage and model. The meter finds them
   * by scanning the answer and feeds the reader a body of just those; when that usage is not complete,
   * or the scan is unsure, the answer is parsed whole. @default none: the answer is always parsed whole
   */
  readonly answerUsageFields?: readonly string[];
  /**
   * The top-level member of a JSON answer that holds its usage object (`usage`, Gemini's `usageMetadata`): the meter
   * adds the call's cost to it (`cost_usd`). @default none: the answer's body is left as it is (its headers still say the cost)
   */
  readonly usageField?: string;
  /** How messages name this API's upstream (`The Anthropic upstream failed`). @default the provider */
  readonly label?: string;
  /**
   * The family of wire formats this API is a dialect of: its members share request, answer, stream
   * and error shapes up to a few fields (`fromChat` / `toChat` say which), so the router translates
   * between families, the cache stores and replays a family's answers, and the mock speaks it.
   * @default none: never translated, never cached
   */
  readonly family?: WireFamily;
  /**
   * Chat family: whether a stream carries its usage unasked (`always`: in its last chunk) or only once
   * `requestStreamUsage` asked for it. @default 'asked'
   */
  readonly streamUsage?: 'asked' | 'always';
  /** Where a gateway serves this API, and how it reads the route. @default not served by the gateway */
  readonly route?: AdapterRoute;
  /**
   * How an upstream speaking this API is reached: what a gateway's config names its kind, its path, its key header.
   * Its `kind` is this API's own when no adapter before it in the registry declares the kind as its `upstream`: a
   * request of an API the kind does not speak is translated to its own. @default not reached by a gateway
   */
  readonly upstream?: UpstreamWire;
  /**
   * Other kinds of upstream that speak this API as it is (Chat Completions: OpenAI's own, self-hosted servers and
   * Azure OpenAI's deployments), each with its path. A kind no adapter declares as its `upstream` (Azure OpenAI) has
   * the first adapter listing it here as its own API. @default none
   */
  readonly upstreamVariants?: readonly UpstreamWire[];
  /**
   * The top-level request fields the API accepts, when it refuses any other (with a 422, say): its
   * `fromChat` keeps only these, and the gateway's mock refuses the rest as the provider would.
   * @default any field
   */
  readonly requestFields?: readonly string[];
  /** The first problem of a request body the API would refuse, beyond the checks every API shares. */
  checkRequest?(body: Json): RequestProblem | undefined;
  /** The API's own error answer for `error`. @default OpenAI's `{ error: { message, type, code, param } }` */
  errorBody?(error: ErrorDescription): Json;
  /** What an error answer of this API says, for a message about it. @default `error.message` or `message` when a string */
  errorMessage?(body: unknown): string | undefined;
  /**
   * Chat family: a request in the family's neutral form (OpenAI Chat Completions fields) in this API's
   * own fields, or the reason it cannot be sent (a field the API has no equivalent for). @default as it is
   */
  fromChat?(body: Json): Json | { refused: string };
  /**
   * Chat family: this API's request in the family's neutral form (OpenAI Chat Completions fields), or the
   * reason it cannot leave this API (a field no other member has). Both may change `body` in place: the
   * router passes a copy. @default as it is
   */
  toChat?(body: Json): Json | { refused: string };
  /**
   * The kind of model this API serves (the catalogue's `kind`): a model of another kind is refused with a 400
   * naming the route that serves it. @default 'generation'
   */
  readonly modelKind?: ModelKind;
  /**
   * How the API counts a request's input tokens without running it (Anthropic's `count_tokens`, Gemini's
   * `countTokens`): a gateway serves it free of charge, forwarded to the upstream or answered from `countInput`.
   * @default not served
   */
  readonly countTokens?: TokenCounting;
  /**
   * How the built-in mock answers a call of this API when it has no wire family (audio, images): JSON, SSE events or
   * bytes of a media type. @default the family's answer (an API of neither is not mocked)
   */
  mockAnswer?(body: Json): MockAnswer;
  /**
   * How the API's requests are sent: `json` bodies, or `multipart` forms (an upload): a gateway reads the form's
   * fields into the body, each file described as an `UploadedFile`, and forwards the form as it came. @default 'json'
   */
  readonly requestForm?: 'json' | 'multipart';
}

/** A mock's answer to an API of no wire family (see `ProviderAdapter.mockAnswer`). */
export type MockAnswer =
  | { readonly json: Json }
  | { readonly events: readonly { readonly event?: string; readonly data: unknown }[] }
  | { readonly contentType: string; readonly bytes: Buffer };

/** Families of wire formats (see `ProviderAdapter.family`). */
export type WireFamily = 'chat' | 'responses' | 'messages' | 'generate' | 'embeddings';

/** An API's token-counting method (see `ProviderAdapter.countTokens`). */
export interface TokenCounting {
  /**
   * The gateway's path for it (`/v1/messages/count_tokens`). Absent: the API's own route, whose path names the
   * method (Gemini's `models/{model}:countTokens`; the gateway's route for the API tells the methods apart).
   */
  readonly path?: string;
  /** When the count shares the API's route (no `path`): the method its path names (`countTokens`). */
  readonly method?: string;
  /** The path of the count at an upstream of this API, after the base URL, for `model` (already URL-encoded). */
  upstreamPath(model: string): string;
  /** The part of a count request `countInput` reads: a generation request. @default the body */
  request?(body: Json): Json;
  /** The first problem of a count request the API would refuse. */
  checkRequest?(body: Json): RequestProblem | undefined;
  /** The API's answer with the count. */
  answer(inputTokens: number): Json;
  /**
   * A count request of `text` as the one user message to `model`: how the gateway asks the provider to count an
   * answer's text its own count only bounds (an upstream's `countCutAnswers`). @default not asked
   */
  textRequest?(model: string, text: string): Json;
  /** The count an answer of the API's count holds (`answer`'s inverse); undefined when it holds none. */
  readCount?(answer: unknown): number | undefined;
}

/** What a request body is refused for: the field (`param`) and why. */
export interface RequestProblem {
  param: string;
  message: string;
}

/** An error to write in an API's own shape. */
export interface ErrorDescription {
  status: number;
  message: string;
  /** OpenAI's `type` (`invalid_request_error`, `server_error`...). */
  type: string;
  code: string | null;
  param: string | null;
}

export interface AdapterRoute {
  /** The gateway's path for the API (`/v1/chat/completions`); Express params allowed (`/v1beta/models/:target`). */
  readonly path: string;
  /**
   * Other paths of the same route, as the provider serves them too (Google: `/v1/models/:target`, where its SDKs
   * call by default, beside `/v1beta/...`). Messages show `shown` or `path`. @default none
   */
  readonly aliases?: readonly string[];
  /** True when the model is named in the path, not in the body (Gemini): the body need not name one. @default false */
  readonly modelInPath?: boolean;
  /** The path as a message to a client shows it (`/v1beta/models/{model}:generateContent`). @default path */
  readonly shown?: string;
  /** A path naming a method beside the model (Gemini's `models/{model}:{method}`). @default the path is the method */
  readonly methods?: RouteMethods;
  /**
   * Headers where the API's own SDKs put a key (Google's `x-goog-api-key`): a gateway reads the caller's key there as
   * it reads `x-api-key`. @default none
   */
  readonly keyHeaders?: readonly string[];
}

/** How a route's path names the method of a call (see `AdapterRoute.methods`). */
export interface RouteMethods {
  /** The methods of the API's calls (`generateContent`, `streamGenerateContent`); its count's: `countTokens.method`. */
  readonly calls: readonly string[];
  /**
   * The call's params (`model`, `action`) from the route's own (Express's `req.params`), or undefined when they name
   * no method of the API (its calls' or its count's).
   */
  read(params: Readonly<Record<string, unknown>>): { model: string; action: string } | undefined;
  /** The first problem of a call of `method` the API refuses for its query string (a stream not asked as SSE). */
  checkQuery?(method: string, query: Readonly<Record<string, unknown>>): RequestProblem | undefined;
}

/** What an upstream entry of a gateway's config says that an upstream's wire reads, beyond its base URL and key. */
export interface UpstreamSettings {
  /** Azure OpenAI: the `api-version` query parameter of every call. */
  readonly apiVersion?: string;
  /** Azure OpenAI: the deployment serving each model name. */
  readonly deployments?: Readonly<Record<string, string>>;
  /** Anthropic: the `anthropic-version` sent when the client sent none. */
  readonly anthropicVersion?: string;
}

/** A call, as an upstream's path names it. */
export interface UpstreamCall {
  /** The model the call runs with (as it is: a path encodes it). */
  readonly model: string;
  readonly stream: boolean;
}

/** The headers of a client's request, as Node gives them. */
export type ClientHeaders = Readonly<Record<string, string | string[] | undefined>>;

export interface UpstreamWire {
  /**
   * The `api` of a gateway's upstream entry that speaks this API (`upstreams.<name>.api`). Every wire of one kind
   * says the same of how the kind is reached (key header, models path, headers, names); each says its own `path`.
   */
  readonly kind: string;
  /** Upstream names that speak this kind when their entry names no `api`. @default [kind] */
  readonly names?: readonly string[];
  /** The provider's own base URL (what an operator configures; calls go to base URL + `path`). */
  readonly baseUrl: string;
  /** The environment variable its key is usually read from (docs and config hints). @default none (no key needed) */
  readonly keyEnv?: string;
  /**
   * Path of a call, after the base URL: one for every call, or built for each call's model (Gemini names model and
   * method, Azure OpenAI the model's deployment and the API version).
   */
  readonly path: string | ((call: UpstreamCall, settings: UpstreamSettings) => string);
  /** Path listing the upstream's models (the free health probe), after the base URL. */
  readonly modelsPath: string | ((settings: UpstreamSettings) => string);
  /**
   * The paid health probe: the body of the kind's own call for `model` asking for one output token (its path is a
   * call's). It is billed like any call, so a gateway sends it only when its config asks for it. @default none
   */
  oneTokenCall?(model: string): Readonly<Record<string, unknown>>;
  /** The provider's public status page (Statuspage JSON with `status.indicator`). @default none */
  readonly statusPage?: string;
  /** The headers carrying the upstream's key. */
  authHeaders(key: string): Readonly<Record<string, string>>;
  /**
   * Headers every call carries beyond the key (Anthropic's version and beta flags): the client's where it sent
   * well-formed ones (`client` is absent for the gateway's own calls, its health probes), else the defaults.
   * @default none
   */
  callHeaders?(client: ClientHeaders | undefined, settings: UpstreamSettings): Readonly<Record<string, string>>;
  /**
   * The tokenizer a configured model served by an upstream of this kind is counted with when its entry names none: an
   * approximation, not declared the provider's own (a self-hosted Llama speaks OpenAI's API too), so a stream is cut
   * only on a lower bound. @default the catalogue's approximation
   */
  readonly modelTokenizer?: EncodingName;
}
