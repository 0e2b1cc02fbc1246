// A family's answers in their forms: a plain answer written as the family's JSON, a JSON answer written as its event
// stream, and a stream assembled back into the JSON answer. The cache replays answers through them; the mock speaks them.
import type { WireFamily } from './adapter.js';
import { anthropicAnswerForms } from './anthropic-messages/answer.js';
import { geminiAnswerForms } from './gemini/answer.js';
import { isObject, parseJson } from './json.js';
import type { Json } from './json.js';
import { chatAnswerForms } from './openai-chat/answer.js';
import { embeddingsAnswerForms } from './openai-embeddings/answer.js';
import { responsesAnswerForms } from './openai-responses/answer.js';
import type { AnswerForms } from './answer-types.js';

export type { AnswerForms, PlainAnswer, SseMessage, StreamOptions } from './answer-types.js';

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
