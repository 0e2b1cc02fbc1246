// The gateway's WebSocket upgrades, one dispatcher by path for every socket mode (the Responses API's, Realtime's): each
// upgrade passes its path's handshake route (the chain's `socketHandshake` profile) through the app the gateway runs
// in, so a refusal is an HTTP answer rendered as any other; an admitted one is handed to its mode.
import { ServerResponse } from 'node:http';
import type { IncomingMessage, RequestListener, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { NextFunction, Request, Response } from 'express';
import type { WebSocket, WebSocketServer } from 'ws';

/** The close code of a socket closed because the server is stopping (RFC 6455 "going away"). */
export const GOING_AWAY = 1001;

/** Upgrades the handshake routes admitted: the routes pass every other request on (a GET there is a 405). */
const admitted = new WeakMap<IncomingMessage, () => void>();

/** A handshake route's `route` stage: only an upgrade the dispatcher handed to the app is its request. */
export function matchSocketHandshake(req: Request, _res: Response, next: NextFunction): void {
  next(admitted.has(req) ? undefined : 'route');
}

/** A handshake route's last handler: the chain admitted the upgrade (a refusal it answered itself). */
export function admitSocketHandshake(req: Request): void {
  admitted.get(req)?.();
}

/** One socket mode: its path, the server that completes its upgrades, what it does with an admitted socket. */
export interface SocketMode {
  readonly path: string;
  /** Completes the mode's upgrades (its own frame size limit). */
  readonly sockets: WebSocketServer;
  /** An admitted socket: `upgrade` is its request, `server` the HTTP server it came by. */
  accept(server: Server, upgrade: IncomingMessage, socket: WebSocket): void;
  /** Stops taking new work; each socket closes with 1001 once what it runs is done. */
  drain(): void;
  /** Ends every socket. */
  close(): Promise<void>;
}

/** The modes' dispatcher: attached to HTTP servers, drained and closed with the gateway. */
export interface SocketUpgrades {
  /** Serves the modes on `server`'s upgrades; `app` is the request listener the gateway runs in. */
  attach(server: Server, app: RequestListener): void;
  /** Upgrades get 503 from now on, and every mode drains. */
  drain(): void;
  close(): Promise<void>;
}

/** An upgrade refused before the handshake ran (another path, a stopping server): an HTTP answer, then closed. */
function refuse(socket: Duplex, status: number, code: string, message: string): void {
  const body = JSON.stringify({ error: { message, type: 'invalid_request_error', code, param: null } });
  socket.end(
    `HTTP/1.1 ${status} ${status === 404 ? 'Not Found' : 'Service Unavailable'}\r\nconnection: close\r\n` +
      `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

export function socketUpgrades(modes: readonly SocketMode[]): SocketUpgrades {
  const byPath = new Map(modes.map((mode) => [mode.path, mode]));
  let draining = false;

  function handshake(server: Server, app: RequestListener, req: IncomingMessage, socket: Duplex, head: Buffer) {
    socket.on('error', () => socket.destroy());
    const path = (req.url ?? '').split('?')[0] ?? '';
    const mode = byPath.get(path);
    if (!mode) {
      // Another listener may serve that path; alone, this one answers it.
      if (server.listenerCount('upgrade') === 1)
        refuse(socket, 404, 'not_found', `No WebSocket at ${path.slice(0, 200)}.`);
      return;
    }
    if (draining) {
      refuse(socket, 503, 'service_unavailable', 'The server is stopping: connect again (to another replica).');
      return;
    }
    // The upgrade passes its handshake route (guard, auth, permissions); a refusal is its HTTP answer on the socket.
    const res = new ServerResponse(req);
    res.assignSocket(socket as Socket);
    res.shouldKeepAlive = false;
    res.once('finish', () => socket.end());
    admitted.set(req, () => {
      admitted.delete(req);
      res.detachSocket(socket as Socket);
      res.statusCode = 101;
      mode.sockets.handleUpgrade(req, socket, head, (ws) => {
        res.emit('close');
        mode.accept(server, req, ws);
      });
    });
    app(req, res);
  }

  return {
    attach(server, app) {
      server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) =>
        handshake(server, app, req, socket, head),
      );
    },
    drain() {
      if (draining) return;
      draining = true;
      for (const mode of modes) mode.drain();
    },
    async close() {
      await Promise.all(modes.map((mode) => mode.close()));
    },
  };
}
