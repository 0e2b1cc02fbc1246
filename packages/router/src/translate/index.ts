// Translation between provider APIs, so a model group may mix OpenAI-shaped and Anthropic targets: requests, answers, streams, errors.
import { TollgateError } from '@tollgate/core';
import type { ProviderApi } from '@tollgate/core';
import { chatCompletionToMessage, messageToChatCompletion } from './answers.js';
import { chatToMessagesRequest } from './chat-to-messages.js';
import { translateUpstreamError } from './errors.js';
import type { TranslatedError } from './errors.js';
import { isObject, Untranslatable } from './json.js';
import type { Json, TranslatedRequest } from './json.js';
import { messagesToChatRequest } from './messages-to-chat.js';
import type { ChatTarget } from './messages-to-chat.js';
import { ChatToMessagesStream } from './stream-chat-to-messages.js';
import { MessagesToChatStream } from './stream-messages-to-chat.js';
import { MessagesToResponsesStream } from './stream-messages-to-responses.js';
import { messageToResponse } from './responses-answer.js';
import { responsesToMessagesRequest } from './responses-to-messages.js';
import type { StreamTranslator } from './stream.js';

export type { StreamTranslator } from './stream.js';
export type { TranslatedError } from './errors.js';
export type { TranslatedRequest } from './json.js';

/** OpenAI's chat wire format, spoken by OpenAI and by self-hosted servers. */
const isChat = (api: ProviderApi): api is ChatTarget => api === 'openai.chat' || api === 'openai.compatible';

/** The same wire format on both sides: nothing to translate but the model name. */
const sameShape = (a: ProviderApi, b: ProviderApi): boolean => a === b || (isChat(a) && isChat(b));

/** Whether requests of `from` (the client's API) can be sent to a `to` target at all. */
export function canTranslate(from: ProviderApi, to: ProviderApi): boolean {
  if (sameShape(from, to) || (from === 'anthropic.messages' && isChat(to))) return true;
  return (isChat(from) || from === 'openai.responses') && to === 'anthropic.messages';
}

function noTranslation(from: ProviderApi, to: ProviderApi): string {
  return `no translation from ${from} to ${to}`;
}

/**
 * The model, and the output cap in the field the target reads: OpenAI's reasoning models refuse
 * `max_tokens`, and self-hosted servers may know only `max_tokens`.
 */
function sameShapeRequest(body: Json, from: ProviderApi, to: ProviderApi, targetModel: string): Json {
  // The same API asking for the same model: nothing to change, so nothing to copy (the usual first try of a group).
  if (from === to && body.model === targetModel) return body;
  // Copied then set, not `{ ...body, model }`: a literal that opens with a spread is slow to build and to serialise.
  const request: Json = Object.assign({}, body);
  request.model = targetModel;
  if (
    from === 'openai.compatible' &&
    to === 'openai.chat' &&
    request.max_tokens !== undefined &&
    request.max_completion_tokens === undefined
  ) {
    request.max_completion_tokens = request.max_tokens;
    delete request.max_tokens;
  } else if (
    from === 'openai.chat' &&
    to === 'openai.compatible' &&
    request.max_completion_tokens !== undefined &&
    request.max_tokens === undefined
  ) {
    request.max_tokens = request.max_completion_tokens;
  }
  return request;
}

/**
 * The client's request body in the target's API, for `targetModel`; or, when the target cannot
 * express it (a feature its API lacks), `{ ok: false, reason }` so the router can skip the target
 * and log why. The body is never changed in place; when nothing needs changing (same API, same
 * model) the body itself is returned, so treat the result as read-only.
 */
export function translateRequest(
  body: Record<string, unknown>,
  from: ProviderApi,
  to: ProviderApi,
  targetModel: string,
): TranslatedRequest {
  try {
    if (sameShape(from, to)) return { ok: true, body: sameShapeRequest(body, from, to, targetModel) };
    if (isChat(from) && to === 'anthropic.messages')
      return { ok: true, body: chatToMessagesRequest(body, targetModel) };
    if (from === 'anthropic.messages' && isChat(to))
      return { ok: true, body: messagesToChatRequest(body, to, targetModel) };
    if (from === 'openai.responses' && to === 'anthropic.messages')
      return { ok: true, body: responsesToMessagesRequest(body, targetModel) };
    return { ok: false, reason: noTranslation(from, to) };
  } catch (error) {
    if (error instanceof Untranslatable) return { ok: false, reason: error.message };
    throw error;
  }
}

function unsupported(from: ProviderApi, to: ProviderApi): never {
  throw new TollgateError(
    'ERR_TG_ROUTER_NO_TRANSLATION',
    `The router has ${noTranslation(from, to)}; check canTranslate() before choosing a target.`,
  );
}

/**
 * A target's whole JSON answer (`from`: the target's API) in the client's API (`to`), naming
 * `clientModel`, the model the client asked for. Same-shaped answers are returned as they are.
 */
export function translateResponse(
  json: unknown,
  from: ProviderApi,
  to: ProviderApi,
  clientModel: string,
): Record<string, unknown> {
  const answer: Json = isObject(json) ? json : {};
  if (sameShape(from, to)) return answer;
  if (from === 'anthropic.messages' && isChat(to)) return messageToChatCompletion(answer, clientModel);
  if (isChat(from) && to === 'anthropic.messages') return chatCompletionToMessage(answer, clientModel);
  if (from === 'anthropic.messages' && to === 'openai.responses') return messageToResponse(answer, clientModel);
  return unsupported(from, to);
}

export interface StreamTranslatorOptions {
  /**
   * OpenAI chat clients: end with the usage chunk (`choices: []`). Set it from the client's
   * `stream_options.include_usage`; the proxy's meter asks for usage itself and strips the chunk
   * when the client did not. @default true
   */
  includeUsage?: boolean;
}

/** Passes a same-shaped stream on as text. */
class PassThroughStream implements StreamTranslator {
  private readonly decoder = new TextDecoder();

  push(chunk: string | Uint8Array): string {
    return typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
  }

  end(): string {
    return this.decoder.decode();
  }

  /** Same-shaped answers are metered as they pass, by the client's own adapter. */
  usage(): undefined {
    return undefined;
  }
}

/**
 * Rewrites a target's event stream (`from`) as the client's (`to`) while it streams: feed each
 * upstream chunk, split anywhere, to `push` and send what it returns; call `end` when the upstream ends.
 */
export function createStreamTranslator(
  from: ProviderApi,
  to: ProviderApi,
  clientModel: string,
  options: StreamTranslatorOptions = {},
): StreamTranslator {
  if (sameShape(from, to)) return new PassThroughStream();
  if (from === 'anthropic.messages' && isChat(to))
    return new MessagesToChatStream(clientModel, options.includeUsage ?? true);
  if (isChat(from) && to === 'anthropic.messages') return new ChatToMessagesStream(clientModel);
  if (from === 'anthropic.messages' && to === 'openai.responses') return new MessagesToResponsesStream(clientModel);
  return unsupported(from, to);
}

/**
 * A target's error answer (`from`) as the client's API (`to`) writes errors, with the status the
 * proxy gives the same failure from an upstream of the client's own API.
 */
export function translateError(status: number, body: unknown, from: ProviderApi, to: ProviderApi): TranslatedError {
  return translateUpstreamError(status, body, from, to);
}
