// MCP sessions: each client session is an SDK Server on its own Streamable HTTP transport, serving the tools of an SDK
// Client of the configured server: listed as the caller's grants allow, called only once the gateway admitted the call.
import { randomUUID } from 'node:crypto';
import type { Request, Response } from 'express';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  CallToolRequestSchema,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
  ToolListChangedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';
import type { CallToolRequest, RequestId, ServerNotification, ServerRequest } from '@modelcontextprotocol/sdk/types.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type { Identity } from '@tollgate/core';
import type { MeteredToolCall } from '@tollgate/core/provider-call';
import type { McpServerEntry } from './options.js';
import type { ToolPolicy } from './tool-policy.js';
import {
  callUpstreamTool,
  connectUpstream,
  endUpstream,
  listUpstreamTools,
  upstreamClient,
  version,
} from './upstream.js';

/** Sessions one key may hold at once; opening one more closes its least recently used. */
export const MAX_SESSIONS_PER_KEY = 32;

type HandlerExtra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** Runs `then` once the exchange's response closed: at once when it has already (its client left). */
export function whenClosed(res: Response, then: () => void): void {
  if (res.closed) then();
  else res.once('close', then);
}

/** One client session: the SDK server the client talks to, and the SDK client of the configured server. */
export class McpSession {
  /** The caller of the session's latest request (one key: its record may have changed since). */
  identity: Identity;
  lastUsed = Date.now();
  /** Exchanges of the session in flight (an open GET stream included): a busy session is never idle. */
  private active = 0;
  /** Tool calls the gateway admitted (limits and budget passed), by JSON-RPC id, until the server handler takes them. */
  private readonly admitted = new Map<RequestId, MeteredToolCall>();
  readonly transport: StreamableHTTPServerTransport;
  private readonly server: Server;
  /** The end of the session with the configured server, once this session closed. */
  private upstreamClosed: Promise<void> | undefined = undefined;

  constructor(
    readonly entry: McpServerEntry,
    identity: Identity,
    private readonly upstream: Client,
    private readonly policy: ToolPolicy,
    onInitialized: (session: McpSession) => void,
    onClosed: (session: McpSession) => void,
  ) {
    this.identity = identity;
    this.transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: () => onInitialized(this),
    });
    // Server, not McpServer: a proxy's tools are another server's, listed per caller, not registered here.
    this.server = new Server(
      { name: `tollgate/${entry.name}`, version },
      { capabilities: { tools: { listChanged: true } }, instructions: upstream.getInstructions() },
    );
    this.server.setRequestHandler(ListToolsRequestSchema, (request, extra) => this.listTools(request.params, extra));
    this.server.setRequestHandler(CallToolRequestSchema, (request, extra) => this.callTool(request, extra));
    upstream.setNotificationHandler(ToolListChangedNotificationSchema, () => this.server.sendToolListChanged());
    this.server.onclose = () => {
      onClosed(this);
      this.upstreamClosed ??= endUpstream(upstream);
    };
  }

  get keyId(): string {
    return this.identity.keyId;
  }

  get idle(): boolean {
    return this.active === 0;
  }

  /** Connects the SDK server to its transport, before the client's initialize reaches it. */
  connect(): Promise<void> {
    return this.server.connect(this.transport);
  }

  /** Hands an exchange of the session (the client's message, its GET stream, its DELETE) to the SDK transport. */
  handle(req: Request, res: Response, body?: unknown): Promise<void> {
    this.identity = req.tollgate.identity ?? this.identity;
    this.active++;
    this.lastUsed = Date.now();
    whenClosed(res, () => {
      this.active--;
      this.lastUsed = Date.now();
    });
    return this.transport.handleRequest(req, res, body);
  }

  /** True while a call with this JSON-RPC id is admitted and not yet taken (ids are unique among a session's requests in flight). */
  holds(id: RequestId): boolean {
    return this.admitted.has(id);
  }

  /** The call `id` passed the gateway's checks: the server handler may forward it while its exchange is open. */
  admit(id: RequestId, call: MeteredToolCall, res: Response): void {
    this.admitted.set(id, call);
    whenClosed(res, () => {
      if (this.admitted.get(id) === call) this.admitted.delete(id);
    });
  }

  async close(): Promise<void> {
    // The transport's close ends the server (server.onclose), which forgets the session and closes the upstream.
    await this.transport.close();
    await this.upstreamClosed;
  }

  private listTools(params: { cursor?: string } | undefined, extra: HandlerExtra) {
    return listUpstreamTools(this.upstream, this.entry, this.policy, this.identity, params, extra.signal);
  }

  private async callTool(request: CallToolRequest, extra: HandlerExtra) {
    const call = this.admitted.get(extra.requestId);
    this.admitted.delete(extra.requestId);
    // Not admitted (the gateway's route admits every tools/call it passes on), or its client left before it ran.
    const finish = call?.start();
    if (!finish)
      throw new McpError(ErrorCode.InvalidRequest, 'This tool call was not admitted by the gateway.', {
        code: 'invalid_request',
      });
    const progressToken = request.params._meta?.progressToken;
    return callUpstreamTool(this.upstream, this.entry, request.params, finish, {
      signal: extra.signal,
      // The client asked for progress: the server's reaches it under the client's own token.
      ...(progressToken === undefined
        ? {}
        : {
            onprogress: (progress) =>
              void extra
                .sendNotification({ method: 'notifications/progress', params: { ...progress, progressToken } })
                .catch(() => undefined),
          }),
    });
  }
}

/** The sessions of a gateway's MCP servers, by session id, each bound to the key that opened it. */
export class McpSessions {
  private readonly sessions = new Map<string, McpSession>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly policy: ToolPolicy) {
    this.sweeper = setInterval(() => this.closeIdle(Date.now()), 30_000);
    this.sweeper.unref();
  }

  /**
   * A session for `req`'s caller on `entry`'s server, its upstream connected (the configured server initialized),
   * kept once the SDK transport answers the client's initialize; closed when the exchange ends without that.
   */
  async open(entry: McpServerEntry, req: Request, res: Response): Promise<McpSession> {
    const upstream = upstreamClient();
    let kept = false;
    // A client that leaves before its initialize is answered leaves no session open at the server (nor here: the
    // session is kept only once its initialize was answered).
    whenClosed(res, () => {
      if (!kept) void endUpstream(upstream);
    });
    await connectUpstream(upstream, entry);
    const session = new McpSession(
      entry,
      req.tollgate.identity!,
      upstream,
      this.policy,
      (opened) => {
        kept = true;
        this.keep(opened);
      },
      (closed) => {
        if (closed.transport.sessionId !== undefined) this.sessions.delete(closed.transport.sessionId);
      },
    );
    await session.connect();
    return session;
  }

  /** The session `id` of `entry`'s server, when `keyId` opened it (to any other caller it does not exist). */
  find(entry: McpServerEntry, id: string, keyId: string): McpSession | undefined {
    const session = this.sessions.get(id);
    return session && session.entry === entry && session.keyId === keyId ? session : undefined;
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    await Promise.all([...this.sessions.values()].map((session) => session.close()));
  }

  private keep(session: McpSession): void {
    const own = [...this.sessions.values()].filter((other) => other.keyId === session.keyId);
    if (own.length >= MAX_SESSIONS_PER_KEY) {
      const oldest = own.reduce((a, b) => (b.lastUsed < a.lastUsed ? b : a));
      void oldest.close();
    }
    this.sessions.set(session.transport.sessionId!, session);
  }

  private closeIdle(now: number): void {
    for (const session of this.sessions.values())
      if (session.idle && now - session.lastUsed > session.entry.idleTimeoutMs) void session.close();
  }
}
