// A family's answers in their forms: a plain answer written as the family's JSON, a JSON answer written as its event
// stream, and a stream assembled back into the JSON answer. The cache replays answers through them, the meter assembles
// a JSON call's streamed answer with them, the mock speaks them.
import type { WireFamily } from './adapter.js';
import { anthropicAnswerForms } from './anthropic-messages/answer.js';
import { geminiAnswerForms } from './gemini/answer.js';
import { isObject, parseJson } from './json.js';
import { SseDecoder } from './sse-decoder.js';
import type { Json } from './json.js';
import { chatAnswerForms } from './openai-chat/answer.js';
import { embeddingsAnswerForms } from './openai-embeddings/answer.js';
import { responsesAnswerForms } from './openai-responses/answer.js';
import type { AnswerForms } from './answer-types.js';

export type { AnswerForms } from './answer-types.js';

const FORMS: Readonly<Record<WireFamily, AnswerForms>> = {
  chat: chatAnswerForms,
  responses: responsesAnswerForms,
  messages: anthropicAnswerForms,
  generate: geminiAnswerForms,
  embeddings: embeddingsAnswerForms,
};

/** The answer forms of an API's family (its adapter's `family`); undefined for an API of no family. */
export function answerFormsOf(family: WireFamily | undefined): AnswerForms | undefined {
  return family === undefined ? undefined : FORMS[family];
}

/** An answer's text parsed, when it is a JSON object; else undefined. */
export function parseAnswer(text: string): Json | undefined {
  const value = parseJson(text);
  return isObject(value) ? value : undefined;
}

/**
 * A stream, as the bytes (or text) that went out, assembled into the family's JSON answer; undefined when it did not
 * end as its API ends (cut short, failed) or the family has no assembly. A stream a gateway ended at its output cap
 * ends as its API ends there.
 */
export function assembleStream(family: WireFamily | undefined, stream: Buffer | string): Json | undefined {
  const fromEvents = answerFormsOf(family)?.fromEvents;
  if (!fromEvents) return undefined;
  const decoder = new SseDecoder();
  const blocks = decoder.push(typeof stream === 'string' ? Buffer.from(stream) : stream);
  // A final block without its blank line is still read: the text ends where the answer ended.
  const last = decoder.end();
  if (last) blocks.push(last);
  return fromEvents(blocks.filter((block) => block.hasData));
}
