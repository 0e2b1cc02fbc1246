// The price reader's worker thread: reads a source and cuts it down to the rows served here (`readSource`).
import { parentPort, workerData } from 'node:worker_threads';
import { readSource } from './price-read.js';

const { source, etag } = workerData as { source: string; etag: string | undefined };
readSource(source, etag).then(
  (read) => parentPort!.postMessage(read ? { read } : {}),
  (error: unknown) => parentPort!.postMessage({ error: error instanceof Error ? error.message : String(error) }),
);
