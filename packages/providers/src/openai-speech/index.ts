// OpenAI speech (`POST /v1/audio/speech`): text to audio, billed per character (tts-1) or per token (gpt-4o-mini-tts).
import type { MediaUsage } from '@tollgate/core/costs';
import type { RequestProblem } from '../adapter.js';
import { asString, isObject, tokenCount } from '../json.js';
import type { Json } from '../json.js';
import { mediaAdapter } from '../media-call.js';
import type { MediaCallUsage } from '../media-call.js';
import { speechAudio } from './audio.js';

/** The most characters of `input` OpenAI takes. */
const MAX_SPEECH_CHARACTERS = 4096;

/**
 * Audio tokens a character of text may become at speed 1, for a model billed per audio token that reports no usage
 * in a binary answer: OpenAI's own figure for gpt-4o-mini-tts is 1,250 tokens a minute ($0.015 at $12 per 1M), about
 * 1.4 a character at 14 characters a second; 2 leaves a margin. An estimate, not a proof (docs/prices.md).
 */
const AUDIO_TOKENS_PER_CHARACTER = 2;

const FORMATS: readonly string[] = ['mp3', 'opus', 'aac', 'flac', 'wav', 'pcm'];
const STREAM_FORMATS: readonly string[] = ['sse', 'audio'];
const SPEED = { min: 0.25, max: 4 };

/**
 * What a speech call uses beside its text tokens: its characters (Unicode code points, the unit tts-1 is billed in)
 * and, for a model billed per audio token, the audio its text may become at the speed asked for (slower is longer).
 */
export function speechMedia(body: Json): MediaUsage {
  const characters = [...asString(body.input)].length;
  const speed = typeof body.speed === 'number' && body.speed >= SPEED.min ? body.speed : 1;
  return { characters, audioOutputTokens: Math.ceil((characters * AUDIO_TOKENS_PER_CHARACTER) / Math.min(speed, 1)) };
}

function speechProblem(body: Json): RequestProblem | undefined {
  const input = body.input;
  if (typeof input !== 'string' || input.length === 0)
    return { param: 'input', message: 'input must be a non-empty string.' };
  if ([...input].length > MAX_SPEECH_CHARACTERS)
    return { param: 'input', message: `input may hold at most ${MAX_SPEECH_CHARACTERS} characters.` };
  const voice = body.voice;
  if (typeof voice !== 'string' && !(isObject(voice) && typeof voice.id === 'string'))
    return { param: 'voice', message: 'voice must be a voice name or an object with a string id.' };
  if (body.response_format !== undefined && !FORMATS.includes(body.response_format as string))
    return { param: 'response_format', message: `response_format must be one of ${FORMATS.join(', ')}.` };
  if (body.stream_format !== undefined && !STREAM_FORMATS.includes(body.stream_format as string))
    return { param: 'stream_format', message: 'stream_format must be "sse" or "audio".' };
  const speed = body.speed;
  if (speed !== undefined && (typeof speed !== 'number' || !(speed >= SPEED.min && speed <= SPEED.max)))
    return { param: 'speed', message: `speed must be a number from ${SPEED.min} to ${SPEED.max}.` };
  if (body.instructions !== undefined && typeof body.instructions !== 'string')
    return { param: 'instructions', message: 'instructions must be a string.' };
  return undefined;
}

/**
 * A speech answer's usage: a stream (`stream_format: "sse"`) ends with `speech.audio.done` and its text tokens in and
 * audio tokens out; audio bytes carry none, so the call is billed what its request asked for (its characters, and for
 * a model billed per audio token the audio bound it was reserved at: OpenAI reports that usage in streams only).
 */
function speechReading(request: Json) {
  const characters = [...asString(request.input)].length;
  let reported: MediaCallUsage | undefined;
  return {
    event(data: Json): boolean {
      if (data.type !== 'speech.audio.done' || !isObject(data.usage)) return false;
      const usage = data.usage;
      reported = {
        input: tokenCount(usage.input_tokens),
        output: 0,
        media: { characters, audioOutputTokens: tokenCount(usage.output_tokens) },
      };
      return true;
    },
    // A JSON answer is an error: nothing to read.
    json: () => undefined,
    reported: () => reported,
  };
}

/**
 * OpenAI's speech API: `model`, `input` (up to 4,096 characters), `voice`, `instructions`, `response_format`, `speed`,
 * `stream_format`. The answer is audio bytes, passed through as they come, or with `stream_format: "sse"` a stream of
 * `speech.audio.delta` events and a `speech.audio.done` with the usage. Billed in the model's unit: tts-1 and tts-1-hd
 * per character, gpt-4o-mini-tts per text token in and audio token out; reserved at the characters and the audio bound
 * (`speechMedia`). Only models whose catalogue row says `kind: 'speech'` are accepted.
 */
export const openAiSpeech = mediaAdapter({
  api: 'openai.speech',
  operation: 'text_to_speech',
  path: '/v1/audio/speech',
  modelKind: 'speech',
  textFields: ['input', 'instructions'],
  stream: (body) => body.stream_format === 'sse',
  media: speechMedia,
  reading: speechReading,
  checkRequest: speechProblem,
  mockAnswer: speechAudio,
});
