// Reads a multipart upload (an audio file and its fields) as it streams in: the fields, each file described, and the
// form's bytes as they came, so that it is forwarded byte for byte.
import type { IncomingMessage } from 'node:http';
import busboy from 'busboy';
import type { Json } from './json.js';
import { UPLOAD_HEAD_BYTES } from './openai-transcriptions/audio-length.js';
import type { UploadedFile } from './openai-transcriptions/audio-length.js';

/** A multipart form read whole: its fields (files as `UploadedFile`), its content type and its bytes. */
export interface UploadForm {
  readonly fields: Json;
  readonly contentType: string;
  readonly bytes: Buffer;
}

declare module '@tollgate/core' {
  interface ContextVariableMap {
    /** The upload a multipart route read (its fields are the body): what is forwarded, byte for byte. */
    'providers.uploadForm': UploadForm;
  }
}

/** Why a form was not read: `413` past the limit, `400` not a form or malformed. */
export class UploadFormError extends Error {
  override readonly name = 'UploadFormError';
  constructor(
    readonly status: 400 | 413,
    message: string,
  ) {
    super(message);
  }
}

/** True when `contentType` is a multipart form. */
export function isUploadForm(contentType: string | undefined): boolean {
  return typeof contentType === 'string' && /^multipart\/form-data\s*;/i.test(contentType);
}

/** Fields a form may hold: OpenAI's take a dozen. */
const MAX_FIELDS = 64;
const MAX_FILES = 4;

/**
 * Reads `req`'s multipart form, at most `maxBytes` of it: the bytes are kept as they arrive (the form forwarded is the
 * one received) and parsed on the way by busboy; each file is counted and its first bytes kept, not stored apart.
 * Rejects with an `UploadFormError` (413 past the limit, 400 for anything else) and stops reading.
 */
export function readUploadForm(req: IncomingMessage, maxBytes: number): Promise<UploadForm> {
  const contentType = req.headers['content-type'];
  if (!isUploadForm(contentType))
    return Promise.reject(new UploadFormError(400, 'The request must be a multipart/form-data upload.'));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let failed = false;
    const fields: Json = {};
    let parser: busboy.Busboy;
    try {
      parser = busboy({
        headers: req.headers,
        limits: { fields: MAX_FIELDS, files: MAX_FILES, fieldSize: maxBytes, fileSize: maxBytes },
      });
    } catch (error) {
      reject(new UploadFormError(400, `The multipart form is malformed: ${(error as Error).message}`));
      return;
    }
    const fail = (error: UploadFormError) => {
      if (failed) return;
      failed = true;
      req.unpipe(parser);
      req.resume();
      reject(error);
    };
    parser.on('field', (name, value) => {
      fields[name] = value;
    });
    parser.on('file', (name, stream, info) => {
      const head: Buffer[] = [];
      let bytes = 0;
      let kept = 0;
      stream.on('data', (data: Buffer) => {
        bytes += data.length;
        if (kept < UPLOAD_HEAD_BYTES) {
          head.push(data.subarray(0, UPLOAD_HEAD_BYTES - kept));
          kept += Math.min(data.length, UPLOAD_HEAD_BYTES - kept);
        }
      });
      // A form cut inside a file fails the file's stream too: the parser's own error says why.
      stream.on('error', () => undefined);
      stream.on('end', () => {
        const file: UploadedFile = {
          filename: info.filename ?? '',
          contentType: info.mimeType,
          bytes,
          head: Buffer.concat(head),
        };
        fields[name] = file;
      });
    });
    parser.on('error', (error: Error) =>
      fail(new UploadFormError(400, `The multipart form is malformed: ${error.message}`)),
    );
    parser.on('fieldsLimit', () => fail(new UploadFormError(400, `The form holds more than ${MAX_FIELDS} fields.`)));
    parser.on('filesLimit', () => fail(new UploadFormError(400, `The form holds more than ${MAX_FILES} files.`)));
    parser.on('close', () => {
      if (!failed) resolve({ fields, contentType: contentType!, bytes: Buffer.concat(chunks, received) });
    });
    req.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received > maxBytes) fail(new UploadFormError(413, `The upload is larger than ${maxBytes} bytes.`));
      else if (!failed) chunks.push(chunk);
    });
    req.on('error', () => fail(new UploadFormError(400, 'The upload was cut short.')));
    req.on('aborted', () => fail(new UploadFormError(400, 'The upload was cut short.')));
    req.pipe(parser);
  });
}

/** Where the value of each text field of a form lies in its bytes: parts are found by the boundary (which no content holds). */
function fieldValues(form: UploadForm): Map<string, { start: number; end: number }> {
  const values = new Map<string, { start: number; end: number }>();
  const boundary = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(form.contentType);
  if (!boundary) return values;
  const delimiter = `\r\n--${boundary[1] ?? boundary[2]!}`;
  const bytes = form.bytes;
  // The first delimiter may open the body without its line break.
  let at = bytes.indexOf(delimiter.slice(2));
  while (at >= 0) {
    const headStart = bytes.indexOf('\r\n', at) + 2;
    const headEnd = bytes.indexOf('\r\n\r\n', headStart);
    if (headStart < 2 || headEnd < 0) break;
    const next = bytes.indexOf(delimiter, headEnd + 4);
    if (next < 0) break;
    const head = bytes.toString('latin1', headStart, headEnd);
    const name = /\bname="([^"]*)"/i.exec(head)?.[1];
    if (name !== undefined && !/\bfilename\*?=/i.test(head)) values.set(name, { start: headEnd + 4, end: next });
    at = next + 2;
  }
  return values;
}

/**
 * `form`'s bytes with its text fields set to `changed` (a downgrade's model, a masked prompt): each field's value
 * replaced where the form holds it, the rest byte for byte; the form itself when nothing changes.
 */
export function withFormFields(form: UploadForm, changed: Readonly<Record<string, string>>): Buffer {
  const names = Object.keys(changed).filter(
    (name) => typeof form.fields[name] === 'string' && form.fields[name] !== changed[name],
  );
  if (names.length === 0) return form.bytes;
  const values = fieldValues(form);
  const edits = names
    .flatMap((name) => (values.has(name) ? [{ ...values.get(name)!, value: changed[name]! }] : []))
    .sort((a, b) => a.start - b.start);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const edit of edits) {
    pieces.push(form.bytes.subarray(from, edit.start), Buffer.from(edit.value));
    from = edit.end;
  }
  pieces.push(form.bytes.subarray(from));
  return Buffer.concat(pieces);
}
