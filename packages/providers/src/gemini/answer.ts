// Gemini's answers in their forms: a plain answer as a `generateContent` answer, that answer as the chunks of
// `streamGenerateContent` (each with the usage so far), and the chunks assembled back into it. The cache keeps none.
import { answerId, wholeText } from '../answer-types.js';
import type { AnswerForms, PlainAnswer, SseMessage, StreamOptions } from '../answer-types.js';
import { asArray, isObject, parseJson } from '../json.js';
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

/** A part appended to a candidate's parts: text after text of the same kind (thought or not) joins it. */
function appendPart(parts: Json[], raw: unknown): void {
  if (!isObject(raw)) return;
  const last = parts.at(-1);
  const textOnly = (part: Json) => Object.keys(part).every((key) => key === 'text' || key === 'thought');
  if (last && typeof raw.text === 'string' && typeof last.text === 'string' && textOnly(raw) && textOnly(last)) {
    if (raw.thought === last.thought) {
      last.text = `${last.text}${raw.text}`;
      return;
    }
  }
  parts.push({ ...raw });
}

/**
 * `streamGenerateContent` chunks assembled into the `generateContent` answer: each candidate's parts in order (text
 * joined), its last finish reason and ratings, the last usage; undefined when a candidate never finished or it failed.
 */
function geminiFromEvents(events: readonly { data: string }[]): Json | undefined {
  let answer: Json | undefined;
  const candidates = new Map<number, Json>();
  for (const { data } of events) {
    const chunk = parseJson(data);
    if (!isObject(chunk) || chunk.error !== undefined) return undefined;
    answer = Object.assign(answer ?? {}, chunk);
    for (const raw of asArray(chunk.candidates)) {
      if (!isObject(raw)) continue;
      const index = typeof raw.index === 'number' ? raw.index : 0;
      let candidate = candidates.get(index);
      if (!candidate) candidates.set(index, (candidate = { content: { parts: [], role: 'model' }, index }));
      const content = candidate.content as { parts: Json[]; role: unknown };
      const delta = isObject(raw.content) ? raw.content : {};
      if (delta.role !== undefined) content.role = delta.role;
      for (const part of asArray(delta.parts)) appendPart(content.parts, part);
      for (const [key, value] of Object.entries(raw)) if (key !== 'content') candidate[key] = value;
    }
  }
  if (!answer || candidates.size === 0) return undefined;
  const finished = [...candidates.values()].sort((a, b) => (a.index as number) - (b.index as number));
  if (!finished.every((candidate) => typeof candidate.finishReason === 'string')) return undefined;
  return { ...answer, candidates: finished };
}

export const geminiAnswerForms: AnswerForms = {
  toEvents: (answer) => geminiEvents(answer),
  fromEvents: geminiFromEvents,
};
