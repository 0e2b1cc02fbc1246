// Translation between provider APIs, so a model group may mix OpenAI-shaped and Anthropic targets: requests, answers, streams, errors.
import { TollgateError } from '@tollgate/core';
import type { ProviderApi } from '@tollgate/core';
import { adapterFor } from '@tollgate/providers';
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
/**
 * The family each API belongs to is its adapter's word (`family`): Chat Completions is spoken by OpenAI, by
 * self-hosted servers and by providers' own dialects of it; each member says how its fields differ (`toChat`,
 * `fromChat`). Between families, translation is pairwise: chat <-> messages, responses -> messages.
 */
const familyOf = (api: ProviderApi) => adapterFor(api).family;
const isChat = (api: ProviderApi): boolean => familyOf(api) === 'chat';
const isMessages = (api: ProviderApi): boolean => familyOf(api) === 'messages';

/** The same wire format on both sides (one API, or two dialects of chat): nothing to translate but fields and the model. */
const sameShape = (a: ProviderApi, b: ProviderApi): boolean => a === b || (isChat(a) && isChat(b));

/** Whether requests of `from` (the client's API) can be sent to a `to` target at all. */
export function canTranslate(from: ProviderApi, to: ProviderApi): boolean {
  if (sameShape(from, to) || (isMessages(from) && isChat(to))) return true;
  return (isChat(from) || familyOf(from) === 'responses') && isMessages(to);
}

/** A dialect's answer to a translation: the body, or why it cannot be sent (the router skips the target). */
function taken(result: Json | { refused: string }): Json {
  if (typeof result.refused === 'string' && Object.keys(result).length === 1) throw new Untranslatable(result.refused);
  return result as Json;
}

/** A chat dialect's request in the family's neutral form (a copy when the dialect changes anything). */
function chatOf(body: Json, from: ProviderApi): Json {
  const toChat = adapterFor(from).toChat;
  return toChat ? taken(toChat(Object.assign({}, body))) : body;
}

/** A request in the chat family's neutral form in the fields of `to` (changed in place: pass a copy). */
function dialectOf(request: Json, to: ProviderApi): Json {
  const fromChat = adapterFor(to).fromChat;
  return fromChat ? taken(fromChat(request)) : request;
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
  const request: Json = Object.assign({}, from === to ? body : chatOf(body, from));
  request.model = targetModel;
  // Two chat dialects: the target's own fields (OpenAI's reasoning models refuse `max_tokens`, self-hosted
  // servers may know only `max_tokens`, a dialect may refuse fields it does not know).
  return from === to ? request : dialectOf(request, to);
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
    if (isChat(from) && isMessages(to))
      return { ok: true, body: chatToMessagesRequest(chatOf(body, from), targetModel) };
    if (isMessages(from) && isChat(to)) {
      // Written for OpenAI itself or in the family's older fields (`max_tokens`), then in the target's dialect.
      const target: ChatTarget = to === 'openai.chat' ? 'openai.chat' : 'openai.compatible';
      const request = messagesToChatRequest(body, target, targetModel);
      return { ok: true, body: to === target ? request : dialectOf(request, to) };
    }
    if (familyOf(from) === 'responses' && isMessages(to))
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
  if (isMessages(from) && isChat(to)) return messageToChatCompletion(answer, clientModel);
  if (isChat(from) && isMessages(to)) return chatCompletionToMessage(answer, clientModel);
  if (isMessages(from) && familyOf(to) === 'responses') return messageToResponse(answer, clientModel);
  return unsupported(from, to);
}

interface StreamTranslatorOptions {
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
  /** Nothing is translated, so no usage is reported here: the client's stream is the target's. */
  readonly finished = false;

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
  if (isMessages(from) && isChat(to)) return new MessagesToChatStream(clientModel, options.includeUsage ?? true);
  if (isChat(from) && isMessages(to)) return new ChatToMessagesStream(clientModel);
  if (isMessages(from) && familyOf(to) === 'responses') return new MessagesToResponsesStream(clientModel);
  return unsupported(from, to);
}

/**
 * A target's error answer (`from`) as the client's API (`to`) writes errors, with the status the
 * proxy gives the same failure from an upstream of the client's own API.
 */
export function translateError(status: number, body: unknown, from: ProviderApi, to: ProviderApi): TranslatedError {
  return translateUpstreamError(status, body, from, to);
}
