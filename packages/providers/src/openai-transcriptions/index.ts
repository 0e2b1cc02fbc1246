// OpenAI transcriptions (`POST /v1/audio/transcriptions`): an audio upload, billed per minute or per audio token.
import type { MediaUsage } from '@tollgate/core/costs';
import type { RequestProblem } from '../adapter.js';
import { isObject, tokenCount } from '../json.js';
import type { Json } from '../json.js';
import { mediaAdapter } from '../media-call.js';
import type { MediaCallUsage } from '../media-call.js';
import { audioSeconds } from './audio-length.js';
import type { UploadedFile } from './audio-length.js';
import { transcriptionAnswer } from './answer.js';

/**
 * Audio tokens a second of audio may become (gpt-4o-transcribe): OpenAI's estimate of $0.006 a minute at $6 per 1M
 * audio tokens is 1,000 tokens a minute, about 17 a second; 25 leaves a margin. An estimate, not a proof.
 */
const AUDIO_TOKENS_PER_SECOND = 25;
/** Transcript tokens a second of speech may hold: fast speech is about 4 words, 6 tokens; 12 leaves a margin. */
const TRANSCRIPT_TOKENS_PER_SECOND = 12;

const FORMATS: readonly string[] = ['json', 'text', 'srt', 'verbose_json', 'vtt', 'diarized_json'];

function isUpload(value: unknown): value is UploadedFile {
  return isObject(value) && typeof value.bytes === 'number' && Buffer.isBuffer(value.head);
}

/**
 * What a transcription may use at most: its audio's seconds (whisper-1's unit), the audio tokens they may become
 * (gpt-4o-transcribe's) and the transcript's text tokens. The seconds are exact for WAV, else a bound from its size.
 */
export function transcriptionMedia(body: Json): MediaUsage {
  const file = body.file;
  const seconds = isUpload(file) ? audioSeconds(file).seconds : 0;
  return {
    audioSeconds: seconds,
    audioInputTokens: seconds * AUDIO_TOKENS_PER_SECOND,
    transcriptTokens: seconds * TRANSCRIPT_TOKENS_PER_SECOND,
  };
}

function transcriptionProblem(body: Json): RequestProblem | undefined {
  const file = body.file;
  if (!isUpload(file) || file.bytes === 0) return { param: 'file', message: 'file must be a non-empty audio file.' };
  if (body.response_format !== undefined && !FORMATS.includes(body.response_format as string))
    return { param: 'response_format', message: `response_format must be one of ${FORMATS.join(', ')}.` };
  for (const field of ['language', 'prompt', 'temperature'])
    if (body[field] !== undefined && typeof body[field] !== 'string')
      return { param: field, message: `${field} must be a form field.` };
  return undefined;
}

/** The usage of a transcription answer: tokens (gpt-4o-transcribe) or seconds (whisper-1, `type: "duration"`). */
function transcriptionUsage(usage: Json): MediaCallUsage {
  if (usage.type === 'duration') {
    const seconds = typeof usage.seconds === 'number' && usage.seconds > 0 ? Math.ceil(usage.seconds) : 0;
    return { input: 0, output: 0, media: { audioSeconds: seconds } };
  }
  const details = isObject(usage.input_token_details) ? usage.input_token_details : {};
  const audio = tokenCount(details.audio_tokens);
  return {
    input: Math.max(0, tokenCount(usage.input_tokens) - audio),
    output: tokenCount(usage.output_tokens),
    media: { audioInputTokens: audio },
  };
}

/**
 * Reads a transcription answer: JSON with `usage` (or `duration`, in `verbose_json`), or a stream's
 * `transcript.text.done` with it. Text formats (`text`, `srt`, `vtt`) carry none: the call is billed what its request
 * reserved, its audio's seconds, audio tokens and transcript bound (exact seconds for WAV). An answer reports
 * tokens or seconds; the request's seconds stand for those it does not report (a unit the model's row does not price
 * costs nothing, so each model is billed its own unit).
 */
function transcriptionReading(request: Json) {
  const asked = transcriptionMedia(request);
  let reported: MediaCallUsage | undefined;
  const read = (answer: Json) => {
    if (isObject(answer.usage)) {
      reported = transcriptionUsage(answer.usage);
      // An answer in tokens of a model billed by the minute is billed the audio's seconds: never free.
      reported.media.audioSeconds ??= asked.audioSeconds;
    } else if (typeof answer.duration === 'number')
      reported = { input: 0, output: 0, media: { audioSeconds: Math.ceil(answer.duration) } };
  };
  return {
    event(data: Json): boolean {
      if (data.type !== 'transcript.text.done' || !isObject(data.usage)) return false;
      read(data);
      return true;
    },
    json: read,
    reported: () => reported,
  };
}

/**
 * OpenAI's transcriptions API: a multipart form of `file` (the audio), `model`, `response_format`, `language`,
 * `prompt`, `temperature`, `stream`... A gateway reads the form's fields and describes its file (`UploadedFile`), and
 * forwards the form byte for byte. Billed in the model's unit: whisper-1 per minute of audio (to the second),
 * gpt-4o-transcribe and gpt-4o-mini-transcribe per audio token in and text token out; reserved at the audio's length
 * (exact for WAV, else its size at the lowest bitrate) and what it may become (`transcriptionMedia`). Only models
 * whose catalogue row says `kind: 'transcription'` are accepted.
 */
export const openAiTranscriptions = mediaAdapter({
  api: 'openai.transcriptions',
  operation: 'speech_to_text',
  path: '/v1/audio/transcriptions',
  modelKind: 'transcription',
  textFields: ['prompt'],
  stream: (body) => body.stream === true || body.stream === 'true',
  media: transcriptionMedia,
  reading: transcriptionReading,
  checkRequest: transcriptionProblem,
  mockAnswer: transcriptionAnswer,
  requestForm: 'multipart',
});
