// Drives an app (Express or a bare node:http listener) in-process: Node's own IncomingMessage/ServerResponse on a discarding socket.
import { IncomingMessage, ServerResponse, type RequestListener } from 'node:http';
import { Duplex } from 'node:stream';

/** Stands in for a TCP socket: writes succeed at once and go nowhere. */
export class DiscardSocket extends Duplex {
  readonly remoteAddress = '127.0.0.1';
  readonly remotePort = 40000;
  readonly encrypted = false;
  override _read(): void {}
  override _write(_chunk: unknown, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    callback();
  }
  setTimeout(): this {
    return this;
  }
  setNoDelay(): this {
    return this;
  }
  setKeepAlive(): this {
    return this;
  }
}

interface InjectRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: Buffer;
}

/**
 * One request through the app. Resolves with the status once the response is finished and its
 * 'close' was emitted, in the order Node's http server uses (finish, then close on the next tick),
 * since tollgate settles on close.
 */
export function inject(app: RequestListener, request: InjectRequest): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = new DiscardSocket();
    const req = new IncomingMessage(socket as never);
    req.method = request.method;
    req.url = request.url;
    req.httpVersionMajor = 1;
    req.httpVersionMinor = 1;
    req.httpVersion = '1.1';
    const headers: Record<string, string> = {
      ...request.headers,
      'content-length': String(request.body.length),
      host: '127.0.0.1',
    };
    req.headers = headers;
    req.rawHeaders = Object.entries(headers).flat();
    req.push(request.body);
    req.push(null);
    // What the http parser sets at the end of a message: without it Node treats the request as aborted on destroy.
    req.complete = true;
    const res = new ServerResponse(req);
    res.assignSocket(socket as never);
    res.once('finish', () => {
      res.detachSocket(socket as never);
      process.nextTick(() => {
        res.emit('close');
        socket.destroy();
        resolve(res.statusCode);
      });
    });
    try {
      app(req as never, res as never);
    } catch (error) {
      reject(error instanceof Error ? error : new Error(String(error)));
    }
  });
}

/** Sends `count` requests through the app in-process, `concurrency` at a time; resolves with their statuses. */
async function sendAll(
  app: RequestListener,
  count: number,
  concurrency: number,
  request: (index: number) => InjectRequest,
  statuses: Record<string, number> = {},
): Promise<Record<string, number>> {
  let sent = 0;
  const worker = async () => {
    while (sent < count) {
      const status = await inject(app, request(sent++));
      statuses[status] = (statuses[status] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return statuses;
}

/**
 * A block of requests as sendAll sends them, and this process's CPU (user + system, every thread) over it, µs per
 * request. What runs after the answers within a turn of the event loop (settles) belongs to the block, as a server's
 * loop turns between reads.
 */
export async function cpuPerRequest(
  app: RequestListener,
  count: number,
  concurrency: number,
  request: (index: number) => InjectRequest,
  statuses: Record<string, number> = {},
): Promise<{ cpuUs: number; statuses: Record<string, number> }> {
  const started = process.cpuUsage();
  await sendAll(app, count, concurrency, request, statuses);
  await new Promise((resolve) => setImmediate(resolve));
  const used = process.cpuUsage(started);
  return { cpuUs: (used.user + used.system) / count, statuses };
}
