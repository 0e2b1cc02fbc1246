// How long an uploaded audio file may play: exact for WAV (its header says), else a bound from its size.

/** An uploaded file as a gateway's form reader describes it: its name, type, size and first bytes. */
export interface UploadedFile {
  readonly filename: string;
  readonly contentType: string;
  /** Its size in bytes. */
  readonly bytes: number;
  /** Its first bytes (a header): at most `UPLOAD_HEAD_BYTES`. */
  readonly head: Buffer;
}

/** How many of a file's first bytes a form reader keeps for `audioSeconds`. */
export const UPLOAD_HEAD_BYTES = 4096;

/**
 * The lowest bitrate of the formats OpenAI transcribes, in bytes a second: Opus's floor, 6 kbit/s (RFC 6716); MP3's
 * is 8, AAC's and FLAC's above it. A file of another format at a lower rate would play longer than this bound says.
 */
const MIN_AUDIO_BYTES_PER_SECOND = 750;

/** The seconds a PCM WAV file plays: its `data` chunk over the header's byte rate; undefined when it is no such file. */
function wavSeconds(file: UploadedFile): number | undefined {
  const head = file.head;
  if (head.length < 44 || head.toString('latin1', 0, 4) !== 'RIFF' || head.toString('latin1', 8, 12) !== 'WAVE')
    return undefined;
  let byteRate: number | undefined;
  // Chunks from byte 12: `fmt ` names the byte rate, `data` holds the samples (its size may say more than was sent).
  for (let at = 12; at + 8 <= head.length;) {
    const id = head.toString('latin1', at, at + 4);
    const size = head.readUInt32LE(at + 4);
    if (id === 'fmt ' && at + 20 <= head.length) byteRate = head.readUInt32LE(at + 16);
    if (id === 'data') {
      if (byteRate === undefined || byteRate === 0) return undefined;
      const samples = Math.min(size, Math.max(0, file.bytes - (at + 8)));
      return Math.ceil(samples / byteRate);
    }
    at += 8 + size + (size % 2);
  }
  return undefined;
}

/**
 * The seconds an upload plays, at most: exact (rounded up) for a PCM WAV file, else its size at the lowest bitrate of
 * the formats OpenAI takes (`MIN_AUDIO_BYTES_PER_SECOND`). `exact` says which.
 */
export function audioSeconds(file: UploadedFile): { seconds: number; exact: boolean } {
  const exact = wavSeconds(file);
  if (exact !== undefined) return { seconds: exact, exact: true };
  return { seconds: Math.ceil(file.bytes / MIN_AUDIO_BYTES_PER_SECOND), exact: false };
}
