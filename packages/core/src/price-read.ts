// Reading a price source (a file or a URL), capped as it is read, and cutting it down to the rows served here, in a
// worker thread.
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { startModuleWorker } from './module-worker.js';
import { servedPart } from './price-source.js';

/** A source that does not answer within this is a failed read: the prices in use stay. */
const FETCH_TIMEOUT_MS = 10_000;
/** LiteLLM's file is about 1.5 MB; a source past this is refused as it is read, never held whole. */
const MAX_SOURCE_BYTES = 32 * 1024 * 1024;

const isUrl = (source: string) => /^https?:\/\//i.test(source);

/** Reads a body to its end, refusing it as soon as it passes `MAX_SOURCE_BYTES`. */
async function readCapped(chunks: AsyncIterable<Uint8Array>, what: string): Promise<string> {
  const parts: Uint8Array[] = [];
  let bytes = 0;
  for await (const chunk of chunks) {
    bytes += chunk.byteLength;
    if (bytes > MAX_SOURCE_BYTES) throw new Error(`${what} is more than ${MAX_SOURCE_BYTES} bytes`);
    parts.push(chunk);
  }
  return Buffer.concat(parts).toString('utf8');
}

/** The text of a URL source and its ETag, or undefined when it answered 304 (unchanged since `etag`). */
async function fetchSource(
  url: string,
  etag: string | undefined,
): Promise<{ text: string; etag?: string } | undefined> {
  const response = await fetch(url, {
    headers: etag ? { 'if-none-match': etag } : {},
    signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
    redirect: 'follow',
  });
  if (response.status === 304) return undefined;
  if (!response.ok) throw new Error(`${url} answered ${response.status}`);
  const length = Number(response.headers.get('content-length'));
  if (length > MAX_SOURCE_BYTES) {
    await response.body?.cancel();
    throw new Error(`${url} is ${length} bytes, more than ${MAX_SOURCE_BYTES}`);
  }
  const text = response.body ? await readCapped(response.body, url) : '';
  const tag = response.headers.get('etag');
  return { text, ...(tag ? { etag: tag } : {}) };
}

/** The text of a file source, refused past `MAX_SOURCE_BYTES` as it is read. */
async function readSourceFile(path: string): Promise<string> {
  const file = await open(path, 'r');
  try {
    return await readCapped(file.createReadStream({ autoClose: false }), path);
  } finally {
    await file.close();
  }
}

/** One read of a source: the part of it served here (`servedPart`), a digest of the whole text, and its ETag. */
interface SourceRead {
  served: string;
  digest: string;
  etag?: string;
}

/** Reads `source` here (a URL asked with `etag`); undefined when a URL answered 304. */
export async function readSource(source: string, etag: string | undefined): Promise<SourceRead | undefined> {
  const read = isUrl(source) ? await fetchSource(source, etag) : { text: await readSourceFile(source) };
  if (read === undefined) return undefined;
  const digest = createHash('sha256').update(read.text).digest('hex');
  return { served: servedPart(read.text), digest, ...(read.etag ? { etag: read.etag } : {}) };
}

type WorkerAnswer = { read?: SourceRead } | { error: string };

/** `readSource` in a worker thread of its own (a read every few minutes at most: started for it, then gone). */
export function readSourceOffLoop(source: string, etag: string | undefined): Promise<SourceRead | undefined> {
  const worker = startModuleWorker(import.meta.url, 'price-source-worker', { workerData: { source, etag } });
  return new Promise<SourceRead | undefined>((resolve, reject) => {
    worker.once('message', (answer: WorkerAnswer) => {
      if ('error' in answer) return reject(new Error(answer.error));
      resolve(answer.read);
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the price reader exited (${code}) before it answered`)));
  });
}
