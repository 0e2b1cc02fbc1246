// The embeddings family's answers: vectors written as OpenAI's list (floats, or base64 of little-endian float32), and
// what makes a list whole. Embeddings are never streamed: JSON is their one form.
import type { AnswerForms } from '../answer-types.js';
import { asArray, isObject } from '../json.js';
import type { Json } from '../json.js';

/** Vectors, one per input in order, as OpenAI's embeddings answer. */
export function embeddingsAnswer(
  model: string,
  vectors: readonly Float32Array[],
  format: 'float' | 'base64',
  inputTokens: number,
): Json {
  return {
    object: 'list',
    data: vectors.map((vector, index) => ({
      object: 'embedding',
      index,
      embedding:
        format === 'base64'
          ? Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength).toString('base64')
          : Array.from(vector),
    })),
    model,
    usage: { prompt_tokens: inputTokens, total_tokens: inputTokens },
  };
}

/** A list holding a vector (floats or base64) per input. */
function embeddingsIsComplete(answer: Json): boolean {
  const data = asArray(answer.data);
  return (
    answer.object === 'list' &&
    data.length > 0 &&
    data.every((item) => isObject(item) && (Array.isArray(item.embedding) || typeof item.embedding === 'string'))
  );
}

export const embeddingsAnswerForms: AnswerForms = { isComplete: embeddingsIsComplete };
