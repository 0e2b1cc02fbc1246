// What the built-in mock answers an image call with: OpenAI's images answer, with gpt-image's usage.
import type { MockAnswer } from '../adapter.js';
import { asString, positiveInteger } from '../json.js';
import type { Json } from '../json.js';
import { imageOutputTokens } from './image-tokens.js';

/** A 1x1 transparent PNG: the mock's every image. */
const PIXEL_PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=';

/**
 * A mock images answer: `n` images as base64 PNG (`b64_json`, or a `url` for dall-e's `response_format: "url"`);
 * gpt-image answers carry `usage` (a prompt token per 4 characters, OpenAI's image tokens for the quality and size, a
 * low square for `auto`) and the quality and size they were made at.
 */
export function imagesAnswer(body: Json): MockAnswer {
  const model = asString(body.model);
  const n = positiveInteger(body.n) ?? 1;
  const asUrl = body.response_format === 'url';
  const data = Array.from({ length: n }, () =>
    asUrl ? { url: 'https://mock.invalid/image.png' } : { b64_json: PIXEL_PNG },
  );
  if (!model.startsWith('gpt-image')) return { json: { created: 1_700_000_000, data } };
  const quality = typeof body.quality === 'string' && body.quality !== 'auto' ? body.quality : 'low';
  const size = typeof body.size === 'string' && body.size !== 'auto' ? body.size : '1024x1024';
  const input = Math.ceil(asString(body.prompt).length / 4);
  const output = n * imageOutputTokens(quality, size);
  return {
    json: {
      created: 1_700_000_000,
      data,
      quality,
      size,
      usage: {
        input_tokens: input,
        input_tokens_details: { text_tokens: input, image_tokens: 0 },
        output_tokens: output,
        total_tokens: input + output,
      },
    },
  };
}
