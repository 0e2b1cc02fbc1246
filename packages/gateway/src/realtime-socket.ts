// OpenAI's Realtime API on `/v1/realtime` (docs/realtime.md): the upgrade passes the chain's handshake profile, the
// session is relayed frame for frame to the upstream's Realtime socket under the gateway's key, and each response is
// held before it goes upstream (the `realtimeResponse` route, sent in-process) and billed from its `response.done`.
import { request as httpRequest } from 'node:http';
import type { IncomingMessage, Server } from 'node:http';
import type { Socket } from 'node:net';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ApiError, renderApiError } from '@tollgate/core';
import type { Pricing } from '@tollgate/core';
import type { ResolvedPrice } from '@tollgate/core/costs';
import type { MeteredRealtimeResponse, RealtimeResponseAsk } from '@tollgate/metering';
import { realtimeAddedInput, realtimeOutputCap, realtimeUsage } from '@tollgate/providers/routes';
import type { ProviderRouter, RealtimeUpstream } from '@tollgate/router/upstreams';
import { WebSocket, WebSocketServer } from 'ws';
import type { RawData } from 'ws';
import { connectionPair, messageHeaders } from './responses-socket.js';
import type { RealtimeResponseStages } from './routes.js';
import { clientSecretStages } from './realtime-secrets.js';
import { realtimeError, RealtimeTurn, ZERO_USAGE } from './realtime-turn.js';
import { GOING_AWAY } from './socket-upgrade.js';
import type { SocketMode } from './socket-upgrade.js';

/** The path of the mode: OpenAI's. */
const REALTIME_PATH = '/v1/realtime';
/** The close code of a session cut by policy: its key no longer admitted, or its budget spent (RFC 6455). */
const POLICY_CLOSE = 1008;
/** The largest frame: OpenAI takes appended audio up to 15 MiB a message. */
const MAX_FRAME_BYTES = 16 * 1024 * 1024;
/** How a refused response cuts the session: a budget spent or a key refused ends it; a rate limit does not. */
const CUTTING_STATUSES = new Set([401, 403]);
const CUTTING_CODES = new Set(['insufficient_quota']);

/** One session: the client's socket, the upstream's, and the responses it runs. */
interface Session {
  client: WebSocket;
  upstream: WebSocket;
  upgrade: IncomingMessage;
  server: Server;
  model: string;
  /** The session's settings as last sent or reported (`max_output_tokens`). */
  settings: unknown;
  /** Input tokens the session holds at most: the last response's input and output, and what was added since. */
  input: number;
  /** Client creates waiting for their hold. */
  asking: number;
  /** Client creates admitted and sent, waiting for their `response.created`. */
  sent: RealtimeTurn[];
  running: Map<string, RealtimeTurn>;
  /** Upstream frames held while a response the upstream started (voice activity) waits for its hold. */
  held: string[] | undefined;
  /** How many of those wait. */
  holding: number;
  /** The client's frames, in order: a `response.create` waits for its hold before the next frame goes on. */
  queue: Promise<void>;
  closeWhenIdle: boolean;
}

/** What the mode is built from: where a model's session goes, its prices, and the meter's charge. */
interface RealtimeSocketOptions {
  providers: Pick<ProviderRouter, 'realtimeUpstream'>;
  pricing: Pricing;
  charge: (req: Request, res: Response, ask: RealtimeResponseAsk) => MeteredRealtimeResponse;
  log: (line: string) => void;
}

/** The mode, with its handshake's own check and its responses' stages (routes.ts composes them). */
interface RealtimeSocketServer extends SocketMode {
  /** The handshake's last check: a Realtime model the caller may use, that an upstream serves. */
  checkModel: RequestHandler;
  stages: RealtimeResponseStages;
  /** The stages of a client secret's mint: one response at its cap held as its budget check, then the upstream's mint. */
  mintStages: RealtimeResponseStages;
}

/** The `model` of a Realtime upgrade's query string. */
function upgradeModel(req: IncomingMessage): string | undefined {
  const model = new URL(req.url ?? '/', 'http://gateway').searchParams.get('model');
  return model && model.length > 0 ? model : undefined;
}

export function realtimeSocketServer(options: RealtimeSocketOptions): RealtimeSocketServer {
  const { pricing, providers } = options;
  const sockets = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false });
  const sessions = new Set<Session>();
  /** The turn each in-process POST carries, by its connection's server end. */
  const turns = new WeakMap<object, RealtimeTurn>();
  const charges = new WeakMap<Request, MeteredRealtimeResponse>();
  let draining = false;

  const priceOf = (model: string): ResolvedPrice | undefined => {
    const price = pricing.find(model);
    return price?.kind === 'realtime' ? price : undefined;
  };

  function checkModel(req: Request, res: Response, next: NextFunction): void {
    const model = upgradeModel(req);
    const refuse = (message: string) =>
      renderApiError(new ApiError('invalid_request', message, { param: 'model' }), req, res);
    if (!model) return refuse('Name the Realtime model: /v1/realtime?model=gpt-realtime.');
    if (!priceOf(model)) return refuse(`"${model.slice(0, 100)}" is not a Realtime model the gateway prices.`);
    if (!providers.realtimeUpstream(model))
      return refuse(`No OpenAI upstream serves the model "${model.slice(0, 100)}".`);
    next();
  }

  const sendClient = (session: Session, frame: string) => {
    if (session.client.readyState === WebSocket.OPEN) session.client.send(frame);
  };
  const sendUpstream = (session: Session, frame: RawData | string, binary = false) => {
    if (session.upstream.readyState === WebSocket.OPEN) session.upstream.send(frame, { binary });
  };

  /** Ends the session: the client told why, both sockets closed, every response not done billed what it held. */
  function cut(session: Session, code: number, reason: string) {
    if (session.client.readyState === WebSocket.OPEN || session.client.readyState === WebSocket.CONNECTING)
      session.client.close(code, reason);
    if (session.upstream.readyState === WebSocket.OPEN || session.upstream.readyState === WebSocket.CONNECTING)
      session.upstream.close(1000);
    endAll(session);
  }

  function endAll(session: Session) {
    sessions.delete(session);
    for (const turn of [...session.sent, ...session.running.values()]) turn.end({ usage: undefined, status: 499 });
    session.sent = [];
    session.running.clear();
  }

  /** Asks the chain for a response's hold: the in-process POST the `realtimeResponse` route answers. */
  function requestHold(session: Session, turn: RealtimeTurn): void {
    const payload = JSON.stringify({ model: session.model });
    const [serverEnd, clientEnd] = connectionPair(session.upgrade.socket);
    turns.set(serverEnd, turn);
    session.server.emit('connection', serverEnd);
    const post = httpRequest({
      createConnection: () => clientEnd as Socket,
      method: 'POST',
      path: REALTIME_PATH,
      headers: { ...messageHeaders(session.upgrade.headers, Buffer.byteLength(payload)), accept: 'application/json' },
    });
    post.on('response', (answer) => {
      if (answer.statusCode === 200) {
        answer.resume();
        return;
      }
      let text = '';
      answer.setEncoding('utf8');
      answer.on('data', (chunk: string) => (text += chunk));
      answer.on('end', () => {
        let error: Record<string, unknown> | undefined;
        try {
          error = (JSON.parse(text) as { error?: Record<string, unknown> }).error;
        } catch {
          error = undefined;
        }
        const status = answer.statusCode ?? 502;
        turn.refuse(status, error ?? { code: 'server_error', message: `The gateway answered ${status}.` });
      });
    });
    post.on('error', (error) => turn.refuse(502, { code: 'server_error', message: error.message }));
    post.end(payload);
  }

  /** A refused response: the client's error event; a spent budget or a refused key cuts the session (1008). */
  function refused(session: Session, refusal: { status: number; error: Record<string, unknown> }, eventId?: string) {
    const { error, status } = refusal;
    const code = typeof error.code === 'string' ? error.code : null;
    sendClient(
      session,
      realtimeError(
        {
          type: typeof error.type === 'string' ? error.type : 'invalid_request_error',
          code,
          message: typeof error.message === 'string' ? error.message : `Refused (${status}).`,
          param: typeof error.param === 'string' ? error.param : null,
        },
        eventId,
      ),
    );
    if (CUTTING_STATUSES.has(status) || (code !== null && CUTTING_CODES.has(code)))
      cut(session, POLICY_CLOSE, code ?? 'refused');
  }

  /** A new response's turn: its input is what the session holds, its cap the response's or the session's. */
  const newTurn = (session: Session, response: unknown, eventId: string | undefined) =>
    new RealtimeTurn(
      {
        model: session.model,
        inputTokens: session.input,
        maxOutputTokens: realtimeOutputCap(response, session.settings),
      },
      eventId,
    );

  /** A frame from the client: sent on as it came, a `response.create` once its hold is granted. */
  async function fromClient(session: Session, data: RawData, binary: boolean): Promise<void> {
    let event: Record<string, unknown> | undefined;
    try {
      const parsed: unknown = binary ? undefined : JSON.parse(data.toString());
      event =
        parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)
          ? (parsed as Record<string, unknown>)
          : undefined;
    } catch {
      event = undefined;
    }
    if (event?.type === 'session.update') session.settings = event.session ?? session.settings;
    if (event?.type !== 'response.create') {
      if (event) session.input += realtimeAddedInput(event);
      sendUpstream(session, data, binary);
      return;
    }
    const eventId = typeof event.event_id === 'string' ? event.event_id : undefined;
    const turn = newTurn(session, event.response, eventId);
    session.asking++;
    requestHold(session, turn);
    const refusal = await turn.admission;
    session.asking--;
    if (refusal) {
      refused(session, refusal, eventId);
      return closeIfIdle(session);
    }
    // The session ended while the hold was asked for: nothing went upstream, nothing is billed.
    if (!sessions.has(session)) return turn.end({ usage: { ...ZERO_USAGE }, status: 499 });
    session.sent.push(turn);
    sendUpstream(session, data, binary);
  }

  /** A draining gateway's session closes (1001) once no response of it is asked for, sent or running. */
  function closeIfIdle(session: Session) {
    if (session.closeWhenIdle && session.asking === 0 && session.sent.length === 0 && session.running.size === 0)
      cut(session, GOING_AWAY, 'server stopping');
  }

  /** The turn a `response.created` starts: the oldest client create sent, else one the upstream started itself. */
  function responseStarted(session: Session, id: string, frame: string): boolean {
    const sent = session.sent.shift();
    if (sent) {
      session.running.set(id, sent);
      return false;
    }
    const turn = newTurn(session, undefined, undefined);
    session.running.set(id, turn);
    // Held from here, in order, until every response the upstream started is held for too.
    (session.held ??= []).push(frame);
    session.holding++;
    requestHold(session, turn);
    void turn.admission.then((refusal) => {
      if (!refusal) {
        if (--session.holding > 0) return;
        const held = session.held ?? [];
        session.held = undefined;
        for (const out of held) sendClient(session, out);
        return;
      }
      // Started by the upstream on the caller's voice, before any hold: stopped at once, the session cut.
      session.running.delete(id);
      sendUpstream(session, JSON.stringify({ type: 'response.cancel', response_id: id }));
      refused(session, refusal);
    });
    return true;
  }

  /** A frame from the upstream: read for the session's settings and its responses' usage, sent on as it came. */
  function fromUpstream(session: Session, data: RawData, binary: boolean): void {
    const frame = binary ? undefined : data.toString();
    let event: Record<string, unknown> | undefined;
    try {
      event = frame && frame.startsWith('{') ? (JSON.parse(frame) as Record<string, unknown>) : undefined;
    } catch {
      event = undefined;
    }
    const response = event?.response as { id?: unknown } | undefined;
    const id = typeof response?.id === 'string' ? response.id : undefined;
    if (event?.type === 'session.created' || event?.type === 'session.updated') session.settings = event.session;
    if (event?.type === 'response.created' && id && frame && !session.running.has(id)) {
      if (responseStarted(session, id, frame)) return;
    } else if (event?.type === 'response.done' && id) {
      const usage = realtimeUsage(response);
      const turn = session.running.get(id);
      session.running.delete(id);
      turn?.end({ usage: usage ?? { ...ZERO_USAGE }, status: 200 });
      // The next response reads this one's whole context again: what it read and what it wrote.
      if (usage) session.input = usage.inputTokens + usage.outputTokens + totalMedia(usage.media);
    } else if (event?.type === 'error' && session.sent.length > 0) {
      // A create the upstream refused starts no response: it ends here, at no cost.
      const about = (event.error as { event_id?: unknown } | undefined)?.event_id;
      const index = session.sent.findIndex((turn) => turn.eventId === undefined || turn.eventId === about);
      if (index >= 0) session.sent.splice(index, 1)[0]!.end({ usage: { ...ZERO_USAGE }, status: 400 });
    }
    if (session.held && frame !== undefined) session.held.push(frame);
    else if (frame !== undefined) sendClient(session, frame);
    else if (session.client.readyState === WebSocket.OPEN) session.client.send(data, { binary: true });
    closeIfIdle(session);
  }

  function accept(server: Server, upgrade: IncomingMessage, client: WebSocket): void {
    const model = upgradeModel(upgrade)!;
    const target: RealtimeUpstream | undefined = providers.realtimeUpstream(model);
    if (!target) {
      client.close(1011, 'no upstream');
      return;
    }
    const upstream = new WebSocket(target.url, { headers: { ...target.headers }, perMessageDeflate: false });
    const opened = new Promise<void>((resolve) => upstream.once('open', () => resolve()));
    const session: Session = {
      ...{ client, upstream, upgrade, server, model, settings: undefined, input: 0 },
      ...{ asking: 0, sent: [], running: new Map(), held: undefined, holding: 0 },
      ...{ queue: opened, closeWhenIdle: draining },
    };
    sessions.add(session);
    client.on('message', (data, binary) => {
      session.queue = session.queue.then(() => fromClient(session, data, binary)).catch(() => undefined);
    });
    upstream.on('message', (data, binary) => fromUpstream(session, data, binary));
    upstream.on('unexpected-response', (_req, answer) => {
      sendClient(
        session,
        realtimeError({
          type: 'server_error',
          code: 'upstream_error',
          message: `The upstream refused the session (${answer.statusCode}).`,
        }),
      );
      cut(session, 1011, 'upstream refused');
    });
    upstream.on('error', () => cut(session, 1011, 'upstream failed'));
    upstream.on('close', (code) =>
      cut(session, code === 1000 || code === POLICY_CLOSE ? code : 1011, 'upstream closed'),
    );
    // A client that leaves: the upstream session ends, a response not done is billed what was held for it.
    client.on('close', () => cut(session, 1000, 'client closed'));
    client.on('error', () => client.terminate());
    if (draining) cut(session, GOING_AWAY, 'server stopping');
  }

  const stages: RealtimeResponseStages = {
    match(req, _res, next) {
      next(turns.has(req.socket) ? undefined : 'route');
    },
    charge(req, res, next) {
      const turn = turns.get(req.socket)!;
      const price = priceOf(turn.ask.model);
      if (!price) {
        next(new ApiError('invalid_request', `"${turn.ask.model}" is not a Realtime model the gateway prices.`));
        return;
      }
      charges.set(req, options.charge(req, res, { ...turn.ask, price }));
      next();
    },
    call(req, res) {
      const turn = turns.get(req.socket)!;
      const finish = charges.get(req)?.start();
      if (!finish) {
        res.status(499).end();
        return;
      }
      req.tollgate.markSending();
      void turn.admit(finish).then(() => res.status(200).json({ done: true }));
    },
  };

  const mintStages = clientSecretStages({ providers, priceOf, charge: options.charge });

  return {
    path: REALTIME_PATH,
    sockets,
    accept,
    checkModel,
    stages,
    mintStages,
    drain() {
      draining = true;
      const busy = [...sessions].filter(
        (session) => session.asking > 0 || session.running.size > 0 || session.sent.length > 0,
      ).length;
      if (sessions.size > 0)
        options.log(
          `tollgate proxy: ${sessions.size} Realtime session(s) open, ${busy} with a response in flight: each closes with 1001 once it is done`,
        );
      for (const session of [...sessions]) {
        session.closeWhenIdle = true;
        closeIfIdle(session);
      }
    },
    async close() {
      for (const session of [...sessions]) {
        session.client.terminate();
        session.upstream.terminate();
        endAll(session);
      }
      await new Promise<void>((resolve) => sockets.close(() => resolve()));
    },
  };
}

/** Every media token of a usage, for the session's context. */
function totalMedia(
  media: { audioInputTokens?: number; audioOutputTokens?: number; imageInputTokens?: number } | undefined,
) {
  return (media?.audioInputTokens ?? 0) + (media?.audioOutputTokens ?? 0) + (media?.imageInputTokens ?? 0);
}
