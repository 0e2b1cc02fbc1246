// The Responses API's WebSocket mode on `/v1/responses` (docs/responses-websocket.md): the upgrade passes the chain's
// handshake profile, and each `response.create` runs the provider route itself, as a POST sent to this server over an
// in-process connection, its SSE answer sent on as JSON text frames.
import { request as httpRequest } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, Server } from 'node:http';
import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import bytes from 'bytes';
import { WebSocketServer } from 'ws';
import type { RawData, WebSocket } from 'ws';
import { continuedBody, finishedTurn, warmUp } from './responses-socket-turns.js';
import type { LastTurn } from './responses-socket-turns.js';
import { GOING_AWAY } from './socket-upgrade.js';
import type { SocketMode } from './socket-upgrade.js';

/** The path the mode is served at: the Responses route's own. */
export const RESPONSES_SOCKET_PATH = '/v1/responses';
/** Headers of the upgrade that are the WebSocket's or the connection's own, never sent on with a message's POST. */
const UPGRADE_ONLY = new Set([
  'connection',
  'upgrade',
  'content-length',
  'content-type',
  'transfer-encoding',
  'accept-encoding',
  'keep-alive',
  'te',
  'trailer',
  'expect',
]);
/** What a refusal carries on to the client's error event of the HTTP answer's headers. */
const REFUSAL_HEADERS = ['retry-after', 'x-should-retry', 'ratelimit', 'ratelimit-policy', 'www-authenticate'];

/** A WebSocket error event in the API's shape (`{ type: 'error', status, error }`), sent as a text frame. */
function errorEvent(status: number, code: string, message: string, param: string | null = null): string {
  return JSON.stringify({ type: 'error', status, error: { type: 'invalid_request_error', code, message, param } });
}

/**
 * Two connected in-memory duplex ends: what one writes the other reads; destroying one closes both. The server end
 * carries the client's address, so the chain sees the address it sees over HTTP.
 */
export function connectionPair(
  address: Pick<Socket, 'remoteAddress' | 'remotePort' | 'remoteFamily'>,
): [Duplex, Duplex] {
  const ends: Duplex[] = [];
  const end = (other: () => Duplex) =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, done) {
        other().push(chunk);
        done();
      },
      final(done) {
        other().push(null);
        done();
      },
      destroy(error, done) {
        if (!other().destroyed) other().destroy();
        done(error);
      },
    });
  ends.push(
    end(() => ends[1]!),
    end(() => ends[0]!),
  );
  Object.assign(ends[0]!, {
    remoteAddress: address.remoteAddress,
    remotePort: address.remotePort,
    remoteFamily: address.remoteFamily,
    encrypted: (address as { encrypted?: boolean }).encrypted,
  });
  return [ends[0]!, ends[1]!];
}

/** The upgrade's headers a message's POST carries (credentials, attribution, forwarding), less the socket's own. */
export function messageHeaders(upgrade: IncomingHttpHeaders, length: number): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(upgrade)) {
    if (value === undefined || UPGRADE_ONLY.has(name) || name.startsWith('sec-websocket-')) continue;
    headers[name] = value;
  }
  headers['content-type'] = 'application/json';
  headers['content-length'] = String(length);
  headers.accept = 'text/event-stream';
  headers.connection = 'close';
  return headers;
}

/** Reads an SSE stream's events and hands on each one's data (the JSON of a Responses event). */
function sseEvents(onData: (data: string) => void): { push(chunk: string): void; end(): void } {
  let pending = '';
  const take = (block: string) => {
    const data = block
      .split(/\r?\n/)
      .filter((line) => line.startsWith('data:'))
      .map((line) => line.slice(line.startsWith('data: ') ? 6 : 5))
      .join('\n');
    if (data !== '' && data !== '[DONE]') onData(data);
  };
  return {
    push(chunk) {
      pending += chunk;
      const blocks = pending.split(/\r?\n\r?\n/);
      pending = blocks.pop() ?? '';
      for (const block of blocks) take(block);
    },
    end() {
      if (pending.trim() !== '') take(pending);
      pending = '';
    },
  };
}

/** A stream's event as a frame: the Responses events as they are; an error the stream ended with, as an error event. */
function eventFrame(data: string): string {
  if (data.startsWith('{"type"')) return data;
  try {
    const event = JSON.parse(data) as { type?: unknown; error?: unknown };
    if (typeof event.type !== 'string' && event.error !== undefined) return JSON.stringify({ type: 'error', ...event });
  } catch {
    // Not JSON: sent on as it came, the client's to read.
  }
  return data;
}

/** A refusal or failure answered as JSON (the API's error body), as the mode's error event. */
function refusalFrame(status: number, headers: IncomingHttpHeaders, body: string): string {
  let error: unknown;
  try {
    error = (JSON.parse(body) as { error?: unknown }).error;
  } catch {
    error = undefined;
  }
  const carried = Object.fromEntries(REFUSAL_HEADERS.flatMap((name) => (headers[name] ? [[name, headers[name]]] : [])));
  return JSON.stringify({
    type: 'error',
    status,
    error: error ?? { type: 'server_error', code: null, message: `The gateway answered ${status}.`, param: null },
    ...(Object.keys(carried).length > 0 ? { headers: carried } : {}),
  });
}

/** One open socket: its response in flight (one at a time), and whether it closes once that is done. */
interface OpenSocket {
  socket: WebSocket;
  /** Ends the response in flight (the client left, or the gateway closes). */
  abort?: () => void;
  closeWhenIdle: boolean;
  /** What a next `response.create` may continue by `previous_response_id`. */
  last?: LastTurn;
}

/** The mode's server, for requests whose JSON body may be `bodyLimit` at most (`'1mb'` or bytes). */
export function responsesSocketServer(options: {
  bodyLimit: string | number;
  log: (line: string) => void;
}): SocketMode {
  const limit = typeof options.bodyLimit === 'number' ? options.bodyLimit : (bytes.parse(options.bodyLimit) ?? 1e6);
  // A frame over the JSON body limit is closed with 1009 by ws before it is read whole; the POST itself has the limit.
  const sockets = new WebSocketServer({ noServer: true, maxPayload: limit + 1024, perMessageDeflate: false });
  const open = new Set<OpenSocket>();
  let draining = false;

  /** Sends `frame` when the socket is still open. */
  const send = (entry: OpenSocket, frame: string) => {
    if (entry.socket.readyState === entry.socket.OPEN) entry.socket.send(frame);
  };
  const idle = (entry: OpenSocket) => {
    entry.abort = undefined;
    if (entry.closeWhenIdle) entry.socket.close(GOING_AWAY, 'server stopping');
  };

  /** One `response.create`: the provider route's POST over an in-process connection to `server`, answered as frames. */
  function createResponse(server: Server, upgrade: IncomingMessage, entry: OpenSocket, body: Record<string, unknown>) {
    const payload = JSON.stringify({ ...body, stream: true });
    const [serverEnd, clientEnd] = connectionPair(upgrade.socket);
    server.emit('connection', serverEnd);
    const post = httpRequest({
      createConnection: () => clientEnd as Socket,
      method: 'POST',
      path: RESPONSES_SOCKET_PATH,
      headers: messageHeaders(upgrade.headers, Buffer.byteLength(payload)),
    });
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      idle(entry);
    };
    entry.abort = () => {
      post.destroy();
      finish();
    };
    post.on('response', (answer) => {
      answer.setEncoding('utf8');
      const streamed = answer.statusCode === 200 && /^text\/event-stream/.test(answer.headers['content-type'] ?? '');
      if (streamed) {
        const events = sseEvents((data) => {
          entry.last = finishedTurn(data, body.input) ?? entry.last;
          send(entry, eventFrame(data));
        });
        answer.on('data', (chunk: string) => events.push(chunk));
        answer.on('end', () => {
          events.end();
          finish();
        });
      } else {
        let text = '';
        answer.on('data', (chunk: string) => (text += chunk));
        answer.on('end', () => {
          send(entry, refusalFrame(answer.statusCode ?? 502, answer.headers, text));
          finish();
        });
      }
      // Cut short (the server end destroyed, a shutdown's last resort): the socket is free again.
      answer.on('error', finish);
      answer.on('close', finish);
    });
    post.on('error', (error) => {
      if (!finished) send(entry, errorEvent(502, 'upstream_error', `The response failed: ${error.message}`));
      finish();
    });
    post.end(payload);
  }

  /** A frame from the client: a `response.create` runs when none is in flight; anything else is an error event. */
  function receive(server: Server, upgrade: IncomingMessage, entry: OpenSocket, data: RawData, binary: boolean) {
    let message: unknown;
    try {
      message = binary ? undefined : JSON.parse(data.toString());
    } catch {
      message = undefined;
    }
    if (message === null || typeof message !== 'object' || Array.isArray(message)) {
      send(entry, errorEvent(400, 'invalid_request', 'Each message must be a JSON object as a text frame.'));
      return;
    }
    const { type, ...body } = message as Record<string, unknown>;
    if (type !== 'response.create') {
      const named = typeof type === 'string' ? `"${type.slice(0, 100)}"` : 'no type';
      send(entry, errorEvent(400, 'invalid_request', `Unsupported event ${named}: send "response.create".`, 'type'));
      return;
    }
    if (body.background === true) {
      send(entry, errorEvent(400, 'invalid_request', 'background is not supported over WebSocket.', 'background'));
      return;
    }
    if (entry.abort) {
      const text = 'A response is already in progress on this connection: send the next one when it is done.';
      send(entry, errorEvent(409, 'invalid_request', text));
      return;
    }
    if (entry.closeWhenIdle) return;
    const sent = continuedBody(body, entry.last);
    if (sent.generate === false) {
      const { frames, turn } = warmUp(sent);
      for (const frame of frames) send(entry, frame);
      entry.last = turn;
      return;
    }
    const { generate: _generate, ...call } = sent;
    createResponse(server, upgrade, entry, call);
  }

  function accept(server: Server, upgrade: IncomingMessage, socket: WebSocket): void {
    const entry: OpenSocket = { socket, closeWhenIdle: draining };
    open.add(entry);
    socket.on('message', (data, binary) => receive(server, upgrade, entry, data, binary));
    // A client that leaves mid-response: its POST is ended, settled and billed like an aborted HTTP stream.
    socket.on('close', () => {
      open.delete(entry);
      entry.abort?.();
    });
    socket.on('error', () => socket.terminate());
    if (draining) socket.close(GOING_AWAY, 'server stopping');
  }

  return {
    path: RESPONSES_SOCKET_PATH,
    sockets,
    accept,
    drain() {
      if (draining) return;
      draining = true;
      const busy = [...open].filter((entry) => entry.abort).length;
      if (open.size > 0)
        options.log(
          `tollgate proxy: ${open.size} Responses WebSocket(s) open, ${busy} with a response in flight: each closes with 1001 once it is done`,
        );
      for (const entry of open) {
        entry.closeWhenIdle = true;
        if (!entry.abort) entry.socket.close(GOING_AWAY, 'server stopping');
      }
    },
    async close() {
      for (const entry of open) {
        entry.abort?.();
        entry.socket.terminate();
      }
      open.clear();
      await new Promise<void>((resolve) => sockets.close(() => resolve()));
    },
  };
}
