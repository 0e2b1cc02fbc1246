// OpenAI image generation (`POST /v1/images/generations`): billed per image (dall-e) or per token (gpt-image).
import type { MediaUsage } from '@tollgate/core/costs';
import type { RequestProblem } from '../adapter.js';
import { asArray, asString, isObject, positiveInteger, tokenCount } from '../json.js';
import type { Json } from '../json.js';
import { mediaAdapter } from '../media-call.js';
import type { MediaCallUsage } from '../media-call.js';
import { imagesAnswer } from './answer.js';
import { imageOutputTokens } from './image-tokens.js';

/** The most images one request may ask for (OpenAI refuses more). */
const MAX_IMAGES = 10;

/**
 * The quality and size an image is billed at when the request names none (OpenAI's defaults: quality `auto`, "the best
 * quality for the given model", billed at the dearest of its size; dall-e's size 1024x1024).
 */
function shapeOf(body: Json): { quality: string; size: string } {
  const model = asString(body.model);
  const quality = typeof body.quality === 'string' ? body.quality : 'auto';
  const size = typeof body.size === 'string' ? body.size : model.startsWith('dall-e') ? '1024x1024' : 'auto';
  return { quality, size };
}

/**
 * What an image call may use at most beside its prompt: its images at the quality and size asked for (the unit dall-e
 * is billed in), and their output tokens (gpt-image's unit; partial images of a stream add theirs).
 */
export function imagesMedia(body: Json): MediaUsage {
  const images = positiveInteger(body.n) ?? 1;
  const { quality, size } = shapeOf(body);
  const partials = positiveInteger(body.partial_images) ?? 0;
  return {
    images,
    imageQuality: quality,
    imageSize: size,
    imageOutputTokens: images * imageOutputTokens(quality, size, partials),
  };
}

function imagesProblem(body: Json): RequestProblem | undefined {
  if (typeof body.prompt !== 'string' || body.prompt.length === 0)
    return { param: 'prompt', message: 'prompt must be a non-empty string.' };
  const n = body.n;
  if (n !== undefined && n !== null && (positiveInteger(n) === undefined || (n as number) > MAX_IMAGES))
    return { param: 'n', message: `n must be an integer from 1 to ${MAX_IMAGES}.` };
  for (const field of ['size', 'quality', 'response_format', 'style', 'background', 'output_format', 'user'])
    if (body[field] !== undefined && body[field] !== null && typeof body[field] !== 'string')
      return { param: field, message: `${field} must be a string.` };
  const partials = body.partial_images;
  if (partials !== undefined && partials !== null && !(Number.isSafeInteger(partials) && (partials as number) >= 0))
    return { param: 'partial_images', message: 'partial_images must be an integer >= 0.' };
  return undefined;
}

/** A gpt-image answer's usage: text and image tokens in, image (and text) tokens out. */
function tokenUsage(usage: Json): MediaCallUsage {
  const inDetails = isObject(usage.input_tokens_details) ? usage.input_tokens_details : {};
  const outDetails = isObject(usage.output_tokens_details) ? usage.output_tokens_details : undefined;
  const imageIn = tokenCount(inDetails.image_tokens);
  const output = tokenCount(usage.output_tokens);
  const imageOut = outDetails ? tokenCount(outDetails.image_tokens) : output;
  return {
    input: Math.max(0, tokenCount(usage.input_tokens) - imageIn),
    output: Math.max(0, output - imageOut),
    media: { imageInputTokens: imageIn, imageOutputTokens: imageOut },
  };
}

/**
 * Reads an images answer (JSON, or with `stream: true` the `image_generation.*` events). Its images are counted
 * (`data`, or the stream's completed images) at the quality and size the answer says, else the request's; gpt-image
 * answers add their token usage, and their image tokens replace the bound the request was reserved at.
 */
function imagesReading(request: Json) {
  const asked = imagesMedia(request);
  let images: number | undefined;
  let shape: { quality?: string; size?: string } = {};
  let tokens: MediaCallUsage | undefined;
  const read = (answer: Json) => {
    if (typeof answer.quality === 'string') shape.quality = answer.quality;
    if (typeof answer.size === 'string') shape.size = answer.size;
    if (isObject(answer.usage)) tokens = tokenUsage(answer.usage);
  };
  return {
    event(data: Json): boolean {
      if (data.type !== 'image_generation.completed') return false;
      images = (images ?? 0) + 1;
      read(data);
      return isObject(data.usage);
    },
    json(body: Json): void {
      if (!Array.isArray(body.data)) return;
      images = asArray(body.data).length;
      shape = {};
      read(body);
    },
    reported(): MediaCallUsage | undefined {
      if (images === undefined && tokens === undefined) return undefined;
      const media: MediaUsage = {
        images: images ?? asked.images!,
        imageQuality: shape.quality ?? asked.imageQuality!,
        imageSize: shape.size ?? asked.imageSize!,
        ...(tokens ? tokens.media : { imageOutputTokens: asked.imageOutputTokens! }),
      };
      return { input: tokens?.input ?? 0, output: tokens?.output ?? 0, media };
    },
  };
}

/**
 * OpenAI's image generation: `model`, `prompt`, `n` (1 to 10), `size`, `quality`, `style`, `response_format`,
 * `background`, `output_format`, `partial_images`, `stream`, `user`. Billed in the model's unit: dall-e-3 and dall-e-2
 * per image by quality and size, gpt-image models per token (text in, image tokens out, which the answer's `usage`
 * reports). Reserved at `n` images of the quality and size asked for, and for gpt-image at their output tokens by
 * OpenAI's table (`imageOutputTokens`). Only models whose catalogue row says `kind: 'image'` are accepted.
 */
export const openAiImages = mediaAdapter({
  api: 'openai.images',
  operation: 'generate_content',
  path: '/v1/images/generations',
  modelKind: 'image',
  textFields: ['prompt'],
  stream: (body) => body.stream === true,
  media: imagesMedia,
  reading: imagesReading,
  checkRequest: imagesProblem,
  mockAnswer: imagesAnswer,
  endUserField: 'user',
});
