// What the built-in mock answers a speech call with: audio bytes of the format asked for, or OpenAI's SSE events.
import type { MockAnswer } from '../adapter.js';
import { asString } from '../json.js';
import type { Json } from '../json.js';

/** The media type OpenAI answers each `response_format` with. */
const MEDIA_TYPES: Readonly<Record<string, string>> = {
  mp3: 'audio/mpeg',
  opus: 'audio/opus',
  aac: 'audio/aac',
  flac: 'audio/flac',
  wav: 'audio/wav',
  pcm: 'audio/pcm',
};

/** Mock bytes of audio per character spoken: silence, deterministic. */
const BYTES_PER_CHARACTER = 64;

/**
 * A mock speech answer: silence as long as the text, or `speech.audio.delta` events and a `speech.audio.done` with
 * usage (a token per 4 characters in, an audio token per character out: within what the adapter reserves).
 */
export function speechAudio(body: Json): MockAnswer {
  const characters = [...asString(body.input)].length;
  const audio = Buffer.alloc(characters * BYTES_PER_CHARACTER);
  if (body.stream_format !== 'sse') {
    const format = typeof body.response_format === 'string' ? body.response_format : 'mp3';
    return { contentType: MEDIA_TYPES[format] ?? 'audio/mpeg', bytes: audio };
  }
  const input = Math.ceil(characters / 4);
  return {
    events: [
      { data: { type: 'speech.audio.delta', audio: audio.toString('base64') } },
      {
        data: {
          type: 'speech.audio.done',
          usage: { input_tokens: input, output_tokens: characters, total_tokens: input + characters },
        },
      },
    ],
  };
}
