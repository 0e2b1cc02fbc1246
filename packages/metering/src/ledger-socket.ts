// The embedded ledger of a running gateway, read from another process (`tollgate report --data-dir`) through a Unix
// socket in its data directory: read-only queries, in the gateway's own PGlite, between its writes.
import { chmodSync, rmSync } from 'node:fs';
import { createServer, request } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { join } from 'node:path';
import type { Queryable } from './postgres-ledger.js';

/**
 * Where each part lives in a gateway's data directory (`dataDir`): what the gateway keeps there and what
 * `tollgate report --data-dir` reads.
 */
export function dataDirLayout(dir: string) {
  return {
    /** The embedded usage ledger: a PGlite data directory. */
    ledger: join(dir, 'ledger'),
    /** Keys made while running, in the config file's `{ "keys": [...] }` format. */
    keys: join(dir, 'keys.json'),
    /**
     * The tenants, tiers and MCP servers of the config the holding process serves (written at its start): what a
     * key written to `keys` may name, for `tollgate keys --config DIR/keys.json` to check.
     */
    keyNames: join(dir, 'key-names.json'),
    /** The usage spool. */
    spool: join(dir, 'spool'),
    /** The Unix socket the holding process serves its ledger on (serveLedger). */
    socket: join(dir, 'ledger.sock'),
    /** The lock naming the process that holds the directory (core's process-lock format). */
    lock: join(dir, 'tollgate.pid'),
  };
}

/** A query's text and values are small: the report's aggregates. */
const MAX_BODY_BYTES = 256 * 1024;

/** What runs a query in a read-only transaction: PGlite's `transaction()` keeps the sink's writes out until it ends. */
interface ReadOnlyRunner {
  transaction<T>(run: (tx: Queryable) => Promise<T>): Promise<T>;
}

function answer(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Serves `POST /query` (`{ "text": "SELECT ...", "values": [...] }` → `{ "rows": [...] }`) on the Unix socket `path`,
 * each query in a read-only transaction: a reader can aggregate the ledger and change nothing. The socket is made
 * with mode 0600 inside the data directory (0700): who may read it is who may read the ledger's files.
 */
export async function serveLedger(ledger: ReadOnlyRunner, path: string): Promise<{ close(): Promise<void> }> {
  // A socket file left by a process that died (the data directory's lock was taken over, so it is ours to replace).
  rmSync(path, { force: true });
  const server: Server = createServer(async (req, res) => {
    if (req.method !== 'POST' || req.url !== '/query') return answer(res, 404, { error: 'POST /query only' });
    const text = await readBody(req).catch(() => undefined);
    let parsed: { text?: unknown; values?: unknown };
    try {
      parsed = JSON.parse(text ?? 'null') as typeof parsed;
    } catch {
      return answer(res, 400, { error: 'the body must be JSON: { "text": "...", "values": [...] }' });
    }
    if (typeof parsed?.text !== 'string' || (parsed.values !== undefined && !Array.isArray(parsed.values)))
      return answer(res, 400, { error: 'the body must be JSON: { "text": "...", "values": [...] }' });
    const { text: sql, values } = parsed as { text: string; values?: unknown[] };
    try {
      const rows = await ledger.transaction(async (tx) => {
        await tx.query('SET TRANSACTION READ ONLY');
        return (await tx.query(sql, values ?? [])).rows;
      });
      answer(res, 200, { rows });
    } catch (error) {
      answer(res, 400, { error: error instanceof Error ? error.message : String(error) });
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(path, 0o600);
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          rmSync(path, { force: true });
          resolve();
        });
      }),
  };
}

/** The ledger a running gateway serves on `path` (serveLedger), as a Queryable: what report reads. */
export function ledgerClient(path: string): Queryable {
  return {
    query<Row>(text: string, values: unknown[] = []) {
      const body = JSON.stringify({ text, values });
      return new Promise<{ rows: Row[] }>((resolve, reject) => {
        const req = request(
          { socketPath: path, path: '/query', method: 'POST', headers: { 'content-type': 'application/json' } },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (chunk: Buffer) => chunks.push(chunk));
            res.on('end', () => {
              let parsed: { rows?: Row[]; error?: string };
              try {
                parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof parsed;
              } catch {
                reject(new Error(`the gateway's ledger socket ${path} answered what is not JSON`));
                return;
              }
              if (res.statusCode === 200 && Array.isArray(parsed.rows)) resolve({ rows: parsed.rows });
              else reject(new Error(parsed.error ?? `the gateway's ledger socket ${path} answered ${res.statusCode}`));
            });
            res.on('error', reject);
          },
        );
        req.on('error', (error) => reject(new Error(`cannot reach the gateway's ledger at ${path}: ${error.message}`)));
        req.end(body);
      });
    },
  };
}
