// Gemini's answers in their forms: a plain answer as a `generateContent` answer, and that answer as the chunks of
// `streamGenerateContent` (each with the usage so far). Not yet read back from a stream: the cache keeps none of them.
import { answerId, wholeText } from '../answer-types.js';
import type { AnswerForms, PlainAnswer, SseMessage, StreamOptions } from '../answer-types.js';
import { asArray, isObject } from '../json.js';
import type { Json } from '../json.js';

/** Gemini's `usageMetadata`: the prompt and the candidates' tokens. */
function usageMetadata(promptTokens: number, candidatesTokens: number): Json {
  return {
    promptTokenCount: promptTokens,
    candidatesTokenCount: candidatesTokens,
    totalTokenCount: promptTokens + candidatesTokens,
  };
}

/** A plain answer as a finished `generateContent` answer: one candidate with one text part. */
export function geminiAnswer(answer: PlainAnswer): Json {
  return {
    candidates: [
      {
        content: { parts: [{ text: answer.text }], role: 'model' },
        finishReason: answer.truncated ? 'MAX_TOKENS' : 'STOP',
        index: 0,
      },
    ],
    usageMetadata: usageMetadata(answer.inputTokens, answer.outputTokens),
    modelVersion: answer.model,
    responseId: answerId(''),
  };
}

/**
 * A one-candidate answer as its stream: a chunk per delta of its text, each with the usage so far (a delta counted as
 * a token, never past the answer's own count), the last with the finish reason.
 */
export function geminiEvents(answer: Json, options: StreamOptions = {}): SseMessage[] {
  const { deltas = wholeText } = options;
  const candidate = isObject(asArray(answer.candidates)[0]) ? (asArray(answer.candidates)[0] as Json) : {};
  const content = isObject(candidate.content) ? candidate.content : {};
  const text = asArray(content.parts)
    .map((part) => (isObject(part) && typeof part.text === 'string' ? part.text : ''))
    .join('');
  const usage = isObject(answer.usageMetadata) ? answer.usageMetadata : {};
  const prompt = typeof usage.promptTokenCount === 'number' ? usage.promptTokenCount : 0;
  const output = typeof usage.candidatesTokenCount === 'number' ? usage.candidatesTokenCount : 0;
  const { finishReason, ...open } = candidate;
  const pieces = deltas(text);
  const chunks = pieces.length > 0 ? pieces : [''];
  return chunks.map((piece, i) => {
    const last = i === chunks.length - 1;
    const parts = { ...content, parts: [{ text: piece }] };
    return {
      data: {
        ...answer,
        candidates: [last ? { ...open, content: parts, finishReason } : { ...open, content: parts }],
        usageMetadata: usageMetadata(prompt, Math.min(i + 1, output)),
      },
    };
  });
}

export const geminiAnswerForms: AnswerForms = { toEvents: (answer) => geminiEvents(answer) };
