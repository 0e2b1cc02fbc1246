// A chat stream's content chunks as a shape (chunk-shape.ts): what the reader and the assembly leave open in it.
import type { OpenValue } from '../chunk-shape.js';
import { isObject } from '../json.js';
import type { Json } from '../json.js';

const contentOf = (parsed: unknown): unknown => {
  const choice = isObject(parsed) && Array.isArray(parsed.choices) ? (parsed.choices[0] as unknown) : undefined;
  return isObject(choice) && isObject(choice.delta) ? choice.delta.content : undefined;
};
const obfuscationOf = (parsed: unknown): unknown => (isObject(parsed) ? parsed.obfuscation : undefined);

/**
 * What a content chunk (one choice, unfinished, whose delta holds its text and nothing else; no usage) leaves open in
 * its shape: its text and OpenAI's `obfuscation` padding, so the chunks after it that differ only there are read
 * without a parse (StreamShapes), to the same effect. Undefined for other chunks.
 */
export function contentOpen(chunk: Json): OpenValue[] | undefined {
  const { choices } = chunk;
  if (isObject(chunk.usage) || !Array.isArray(choices) || choices.length !== 1) return undefined;
  const choice: unknown = choices[0];
  if (!isObject(choice) || typeof choice.finish_reason === 'string' || !isObject(choice.delta)) return undefined;
  const { delta } = choice;
  if (typeof delta.content !== 'string' || delta.content === '') return undefined;
  for (const key in delta) if (key !== 'content') return undefined;
  const open = [{ value: delta.content, at: contentOf }];
  if (typeof chunk.obfuscation === 'string') open.push({ value: chunk.obfuscation, at: obfuscationOf });
  return open;
}
