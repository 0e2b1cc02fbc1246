// What the built-in mock answers a transcription with: OpenAI's answer in the format asked for, with its usage.
import type { MockAnswer } from '../adapter.js';
import { asString, isObject } from '../json.js';
import type { Json } from '../json.js';
import { audioSeconds } from './audio-length.js';
import type { UploadedFile } from './audio-length.js';

/** The mock's transcript, whatever was said. */
const TRANSCRIPT = 'The quick brown fox jumps over the lazy dog.';

/**
 * A mock transcription of the uploaded file: whisper models report the seconds they heard (`type: "duration"`), the
 * others tokens (10 audio tokens a second, 11 text tokens out); `text`, `srt` and `vtt` answers are plain text.
 */
export function transcriptionAnswer(body: Json): MockAnswer {
  const file = body.file;
  const seconds =
    isObject(file) && Buffer.isBuffer(file.head) ? audioSeconds(file as unknown as UploadedFile).seconds : 1;
  const format = asString(body.response_format) || 'json';
  if (format === 'text' || format === 'srt' || format === 'vtt')
    return { contentType: 'text/plain; charset=utf-8', bytes: Buffer.from(`${TRANSCRIPT}\n`) };
  const usage = asString(body.model).startsWith('whisper')
    ? { type: 'duration', seconds }
    : {
        type: 'tokens',
        input_tokens: seconds * 10,
        input_token_details: { text_tokens: 0, audio_tokens: seconds * 10 },
        output_tokens: 11,
        total_tokens: seconds * 10 + 11,
      };
  return { json: { text: TRANSCRIPT, usage } };
}
