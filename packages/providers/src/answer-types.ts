// The shapes a family's answer forms share (see answer-forms.ts).
import { randomBytes } from 'node:crypto';
import type { Json } from './json.js';

/** An answer in no API's words, which a family writes as its JSON answer (the mock's replies). */
export interface PlainAnswer {
  model: string;
  text: string;
  inputTokens: number;
  outputTokens: number;
  /** True when the output cap stopped it. */
  truncated: boolean;
}

/** One event of a stream to write: its name (absent in a data-only stream) and its data (JSON, or text such as `[DONE]`). */
export interface SseMessage {
  event?: string;
  data: unknown;
}

export interface StreamOptions {
  /** How a text is cut into the deltas that carry it. @default the whole text in one delta */
  deltas?: (text: string) => readonly string[];
}

/** What the cache needs of a family: absent members are forms the family's answers do not have (or not yet here). */
export interface AnswerForms {
  /** Whole and successful: an answer the provider finished (what the same request gets again). @default never cached */
  isComplete?(answer: Json): boolean;
  /** A JSON answer as the events the API would have streamed. @default a family that never streams */
  toEvents?(answer: Json): SseMessage[];
  /** A stream's events assembled into the JSON answer; undefined when it was cut or failed. */
  fromEvents?(events: readonly { data: string }[]): Json | undefined;
}

/** The default cut of a text into deltas: all of it in one, none for an empty text. */
export const wholeText = (text: string): readonly string[] => (text === '' ? [] : [text]);

/** A fresh id for a written answer, in the API's own style (`chatcmpl-…`, `msg_…`). */
export const answerId = (prefix: string): string => `${prefix}${randomBytes(12).toString('hex')}`;

/** Now, in the whole seconds answers carry. */
export const nowSeconds = (): number => Math.floor(Date.now() / 1000);
