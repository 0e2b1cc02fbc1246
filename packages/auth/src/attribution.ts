// attribution: who a request is for (end user), what for (feature), its tags and session, from the key, then headers, then the body.
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ErrorRenderer, Identity } from '@tollgate/core';
import { ApiError, getContext, renderApiError, TollgateError } from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/options';
import type { ProviderCall } from '@tollgate/core/provider-call';

/** The attribution fields `require` can name. */
export type AttributionField = 'user' | 'feature' | 'tags';
const FIELDS: readonly AttributionField[] = ['user', 'feature', 'tags'];

export interface AttributionOptions {
  /**
   * The header naming the request's end user, when the key names none; `false` reads none.
   * @default 'x-tollgate-user'
   */
  userHeader?: string | false;
  /**
   * The header naming the request's feature, when the key names none; `false` reads none.
   * @default 'x-tollgate-feature'
   */
  featureHeader?: string | false;
  /**
   * The header holding the request's tags, comma-separated (a repeated header adds its tags); `false` reads none.
   * @default 'x-tollgate-tags'
   */
  tagsHeader?: string | false;
  /**
   * Whether the end user may also come from the body field the declared call's API names for it (its adapter's
   * `endUserField`: OpenAI's `user` on chat completions, Responses and embeddings; Anthropic's `metadata.user_id`),
   * when neither the key nor the user header names one. Needs the call declared first (`providerCall(api)`).
   * @default true
   */
  bodyUser?: boolean;
  /**
   * The headers a request's session id is read from, the first one sent winning (Claude Code sends
   * `x-claude-code-session-id`, Codex `session-id`); without one, the `session_id` of a JSON object the body's end-user
   * field holds (Claude Code's `metadata.user_id`). `false` reads none. A session id is 1 to 128 letters, digits or
   * `. : @ - _`: a header that holds anything else is 400 `invalid_request`, a body's is ignored (as a body end user
   * that cannot be a user id is served). The session is `identity.sessionId`: the usage record's `session`, and the
   * scope of a session budget.
   * @default ['x-claude-code-session-id', 'session-id']
   */
  sessionHeaders?: readonly string[] | false;
  /**
   * The header naming the team of its tenant a request is charged to (team and member budgets), when its key names
   * none; `false` reads none. A key's team is kept: a header naming another is 403 `insufficient_scope`. A team no
   * `isTeam` knows is 400 `invalid_request`, as is any team of a caller without a tenant.
   * @default 'x-tollgate-team'
   */
  teamHeader?: string | false;
  /**
   * Whether `team` is a team of tenant `tenantId` (the gateway: the tenant's `teams`): a team header naming another is
   * refused.
   * @default none: no team is known, every team header is refused
   */
  isTeam?: (tenantId: string, team: string) => boolean;
  /**
   * The fields a request must end up with: without one it is refused with 400 `attribution_required` (before
   * anything after this middleware runs: no limit counted, no reservation, no provider call).
   * @default []
   */
  require?: readonly AttributionField[];
  /**
   * The most characters an end user, a feature or one tag may have (after trimming spaces).
   * @default 128
   */
  maxLength?: number;
  /**
   * The most tags a request's tags header may carry (after dropping repeats), besides its key's own.
   * @default 16
   */
  maxTags?: number;
  /**
   * Renders refusals (400 `attribution_required`, 400 `invalid_request` for a malformed value).
   * @default core renderApiError
   */
  renderError?: ErrorRenderer;
}

const KNOWN_OPTIONS = [
  'userHeader',
  'featureHeader',
  'tagsHeader',
  'bodyUser',
  'sessionHeaders',
  'teamHeader',
  'isTeam',
  'require',
  'maxLength',
  'maxTags',
  'renderError',
] as const;
const CODE_INVALID = 'ERR_TG_AUTH_INVALID_OPTION';
/** RFC 9110 token characters: what a header name may hold. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;
/** What a header value may hold: printable ASCII (fetch and most clients send nothing else). */
const HEADER_TEXT = /^[\x20-\x7e]*$/;
/** What a session id may be (the charset and length of a conversation id). */
const SESSION_ID = /^[A-Za-z0-9.:@_-]{1,128}$/;
const DEFAULT_SESSION_HEADERS = ['x-claude-code-session-id', 'session-id'];
/** What a JSON string value may not hold: control and format characters, lone surrogates, line and paragraph separators. */
const NOT_PRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/u;

/**
 * The most characters of a body end-user value kept as it was sent when it cannot be a user id (`clientUserId`):
 * Claude Code's JSON `metadata.user_id` is about 140. A longer or unprintable one is kept as `sha256:<hex>`.
 */
const MAX_CLIENT_USER_LENGTH = 1024;

/** Options resolved once: every field set. */
interface Attribution {
  userHeader: string | undefined;
  featureHeader: string | undefined;
  tagsHeader: string | undefined;
  bodyUser: boolean;
  sessionHeaders: readonly string[];
  teamHeader: string | undefined;
  isTeam: (tenantId: string, team: string) => boolean;
  require: readonly AttributionField[];
  maxLength: number;
  maxTags: number;
}

function headerOption(value: unknown, name: string, fallback: string): string | undefined {
  if (value === false) return undefined;
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !HEADER_NAME.test(value.toLowerCase()))
    throw new TollgateError(CODE_INVALID, `attribution(): ${name} must be a header name or false`);
  return value.toLowerCase();
}

function sessionHeadersOption(value: unknown): readonly string[] {
  if (value === false) return [];
  if (value === undefined) return DEFAULT_SESSION_HEADERS;
  if (!Array.isArray(value) || value.some((name) => typeof name !== 'string' || !HEADER_NAME.test(name.toLowerCase())))
    throw new TollgateError(CODE_INVALID, 'attribution(): sessionHeaders must be a list of header names or false');
  return [...new Set(value.map((name: string) => name.toLowerCase()))];
}

function teamCheckOption(value: unknown): (tenantId: string, team: string) => boolean {
  if (value === undefined) return () => false;
  if (typeof value !== 'function')
    throw new TollgateError(CODE_INVALID, 'attribution(): isTeam must be a function (tenantId, team) => boolean');
  return value as (tenantId: string, team: string) => boolean;
}

function countOption(value: unknown, name: string, fallback: number, most: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || (value as number) < 1 || (value as number) > most)
    throw new TollgateError(CODE_INVALID, `attribution(): ${name} must be an integer from 1 to ${most}`);
  return value as number;
}

function resolveAttribution(options: AttributionOptions): Attribution {
  assertKnownOptions(options, KNOWN_OPTIONS, 'ERR_TG_AUTH_UNKNOWN_OPTION', 'attribution');
  const require = options.require ?? [];
  if (!Array.isArray(require) || require.some((field) => !FIELDS.includes(field)))
    throw new TollgateError(CODE_INVALID, `attribution(): require must list fields among ${FIELDS.join(', ')}`);
  if (options.bodyUser !== undefined && typeof options.bodyUser !== 'boolean')
    throw new TollgateError(CODE_INVALID, 'attribution(): bodyUser must be true or false');
  const resolved: Attribution = {
    userHeader: headerOption(options.userHeader, 'userHeader', 'x-tollgate-user'),
    featureHeader: headerOption(options.featureHeader, 'featureHeader', 'x-tollgate-feature'),
    tagsHeader: headerOption(options.tagsHeader, 'tagsHeader', 'x-tollgate-tags'),
    bodyUser: options.bodyUser ?? true,
    sessionHeaders: sessionHeadersOption(options.sessionHeaders),
    teamHeader: headerOption(options.teamHeader, 'teamHeader', 'x-tollgate-team'),
    isTeam: teamCheckOption(options.isTeam),
    require: [...new Set(require)],
    maxLength: countOption(options.maxLength, 'maxLength', 128, 1024),
    maxTags: countOption(options.maxTags, 'maxTags', 16, 256),
  };
  const headers = [resolved.userHeader, resolved.featureHeader, resolved.tagsHeader, resolved.teamHeader].filter(
    Boolean,
  );
  if (new Set(headers).size !== headers.length)
    throw new TollgateError(
      CODE_INVALID,
      'attribution(): userHeader, featureHeader, tagsHeader and teamHeader must differ',
    );
  if (resolved.sessionHeaders.some((header) => headers.includes(header!)))
    throw new TollgateError(CODE_INVALID, 'attribution(): sessionHeaders must differ from the other headers');
  return resolved;
}

/** A refusal for a malformed attribution value: 400 invalid_request naming where it came from. */
function malformed(param: string, message: string): ApiError {
  return new ApiError('invalid_request', message, { param, layer: 'attribution' });
}

/** What one source gave: a value, nothing, or the refusal to send. */
type Reading = string | undefined | ApiError;

/**
 * The one value a header holds: undefined when absent or blank, a refusal when sent twice (Node would join
 * the two with a comma: `alice, bob` is nobody's id) or not printable ASCII within `maxLength`.
 */
function readHeaderValue(req: IncomingMessage, header: string, maxLength: number): Reading {
  // Node builds `headersDistinct` on first read: a request without the header never needs it.
  if (req.headers[header] === undefined) return undefined;
  const values = req.headersDistinct[header];
  if (values === undefined) return undefined;
  if (values.length > 1) return malformed(header, `Send the ${header} header once.`);
  return checkedText(values[0]!, header, `The ${header} header`, maxLength);
}

/** A header's text trimmed, or a refusal when it is longer than `maxLength` or not printable ASCII; blank is no value. */
function checkedText(raw: string, param: string, what: string, maxLength: number): Reading {
  const text = raw.trim();
  if (text.length === 0) return undefined;
  if (text.length > maxLength || !HEADER_TEXT.test(text))
    return malformed(param, `${what} must be at most ${maxLength} printable ASCII characters.`);
  return text;
}

/** The value at a dotted path of a JSON body (`metadata.user_id`), or undefined. */
function valueAt(body: unknown, path: string): unknown {
  let value = body;
  for (const name of path.split('.')) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
    value = (value as Record<string, unknown>)[name];
  }
  return value;
}

/** What the body's end-user field gave: a user id, or a value only kept for attribution (see `clientUserOf`). */
interface BodyUser {
  userId?: string;
  clientUserId?: string;
}

/** A value kept for attribution only: as sent (trimmed) up to MAX_CLIENT_USER_LENGTH printable characters, else its hash. */
function clientUserOf(text: string): string {
  if (text.length <= MAX_CLIENT_USER_LENGTH && !NOT_PRINTABLE.test(text)) return text;
  return `sha256:${createHash('sha256').update(text).digest('hex')}`;
}

/**
 * The end user the declared call's body names, in the field its adapter says (`user`, `metadata.user_id`): a user id
 * when it is one (at most `maxLength` printable characters), else kept as `clientUserId` and no user; a refusal only
 * for a value that is not a string (which the provider's API refuses too).
 */
function readBodyUser(call: ProviderCall | undefined, maxLength: number): BodyUser | ApiError | undefined {
  const field = call?.adapter.endUserField;
  if (field === undefined) return undefined;
  const value = valueAt(call!.body, field);
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') return malformed(field, `${field} must be a string.`);
  const text = value.trim();
  if (text.length === 0) return undefined;
  // Clients send what suits them here (Claude Code: a JSON object of device, account and session): served, not refused.
  if (text.length > maxLength || NOT_PRINTABLE.test(text)) return { clientUserId: clientUserOf(text) };
  return { userId: text };
}

/** The session id of the first of `headers` the request sends; a refusal when it is not a session id. */
function readSessionHeader(req: IncomingMessage, headers: readonly string[]): Reading {
  for (const header of headers) {
    const value = readHeaderValue(req, header, 128);
    if (value === undefined) continue;
    if (value instanceof ApiError || SESSION_ID.test(value)) return value;
    return malformed(header, `The ${header} header must be 1 to 128 letters, digits or . : @ - _`);
  }
  return undefined;
}

/**
 * The `session_id` of a JSON object the body's end-user field holds as a string (Claude Code's `metadata.user_id`),
 * when it is a session id; else none. Read only from a value within MAX_CLIENT_USER_LENGTH, so parsing stays cheap.
 */
function readBodySession(call: ProviderCall | undefined): string | undefined {
  const field = call?.adapter.endUserField;
  if (field === undefined) return undefined;
  const value = valueAt(call!.body, field);
  if (typeof value !== 'string' || value.length > MAX_CLIENT_USER_LENGTH || !value.trimStart().startsWith('{'))
    return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return undefined;
  }
  const session = valueAt(parsed, 'session_id');
  return typeof session === 'string' && SESSION_ID.test(session) ? session : undefined;
}

/**
 * The identity's tags (its key's) and those of the tags header (every copy of it), trimmed, blanks and repeats
 * dropped; undefined without the header; a refusal when the header's own pass the bounds.
 */
function readTags(
  req: IncomingMessage,
  header: string,
  held: readonly string[],
  options: Attribution,
): ApiError | string[] | undefined {
  if (req.headers[header] === undefined) return undefined;
  const values = req.headersDistinct[header];
  if (values === undefined) return undefined;
  const sent = new Set<string>();
  for (const value of values) {
    // Checked whole first: a value far past every bound is refused before it is split.
    if (value.length > options.maxTags * (options.maxLength + 2) || !HEADER_TEXT.test(value))
      return malformed(
        header,
        `The ${header} header must hold at most ${options.maxTags} comma-separated tags of printable ASCII characters.`,
      );
    for (const part of value.split(',')) {
      const tag = part.trim();
      if (tag.length === 0) continue;
      if (tag.length > options.maxLength)
        return malformed(header, `Each tag of the ${header} header must be at most ${options.maxLength} characters.`);
      sent.add(tag);
      if (sent.size > options.maxTags)
        return malformed(header, `The ${header} header must hold at most ${options.maxTags} tags.`);
    }
  }
  return [...new Set([...held, ...sent])];
}

/**
 * The team a request is charged to: its identity's (a key's `team`), which a header may only repeat (another is 403),
 * else the header's when it names a team of the caller's tenant (another, or any without a tenant, is 400).
 */
function readTeam(req: IncomingMessage, identity: Identity, options: Attribution): Reading {
  // A key's team was checked when the key was written; a token's is the issuer's word: it must be a team of its tenant.
  if (identity.team !== undefined && identity.authMethod === 'jwt') {
    const tenantId = identity.tenantId;
    if (tenantId === undefined || !options.isTeam(tenantId, identity.team))
      return new ApiError(
        'insufficient_scope',
        tenantId === undefined
          ? `The token names team "${identity.team}" but no tenant.`
          : `The token names team "${identity.team}", which is no team of tenant "${tenantId}".`,
        { layer: 'attribution' },
      );
  }
  const header = options.teamHeader;
  const sent = header ? readHeaderValue(req, header, options.maxLength) : undefined;
  if (sent === undefined || sent instanceof ApiError) return sent ?? identity.team;
  if (identity.team !== undefined) {
    if (sent === identity.team) return sent;
    return new ApiError(
      'insufficient_scope',
      `This key is charged to team "${identity.team}": the ${header} header cannot name another team.`,
      { param: header, layer: 'attribution' },
    );
  }
  const tenantId = identity.tenantId;
  if (tenantId === undefined || !options.isTeam(tenantId, sent))
    return malformed(
      header!,
      tenantId === undefined
        ? `The ${header} header names a team, but this key belongs to no tenant.`
        : `The ${header} header names "${sent}", which is no team of tenant "${tenantId}".`,
    );
  return sent;
}

/** Why a request lacking `field` is refused, and how the client names it: its header, or the body field of its API. */
function missingMessage(field: AttributionField, options: Attribution, call: ProviderCall | undefined): string {
  const header = { user: options.userHeader, feature: options.featureHeader, tags: options.tagsHeader }[field];
  const bodyField = field === 'user' && options.bodyUser ? call?.adapter.endUserField : undefined;
  const sources = [header && `the ${header} header`, bodyField && `the body's ${bodyField}`].filter(Boolean);
  const what = field === 'user' ? 'end user' : field;
  return `This request must name its ${what}: send ${sources.length > 0 ? sources.join(' or ') : 'an API key that names it'}.`;
}

/**
 * Express middleware, after an auth middleware: completes `req.tollgate.identity` with the request's end user
 * (`userId`), feature and tags. A value the key (or token) fixes is kept: no header or body can change it. Else the
 * user comes from `userHeader`, then from the body's end-user field (`bodyUser`); the feature from `featureHeader`;
 * tags from `tagsHeader`, added to any the identity holds. A malformed header is 400 `invalid_request` naming it; a
 * body end-user value that cannot be a user id (past `maxLength`, unprintable) is served and kept as `clientUserId`
 * (not a user: no user budget or limit counts it), and only one that is not a string is 400 naming the field; a field listed in `require` that the request does not end up with is 400 `attribution_required`.
 * The session id (`sessionId`) comes from the first of `sessionHeaders` sent, else from the body's end-user field
 * (see `sessionHeaders`); the team (`team`) from the key, else from `teamHeader` (see it).
 * Every later piece reads the identity: limits by user, budgets per user and feature, the usage record.
 */
export function attribution(options: AttributionOptions = {}) {
  const resolved = resolveAttribution(options);
  const { userHeader, featureHeader, tagsHeader, bodyUser, sessionHeaders, require, maxLength } = resolved;
  const renderError = options.renderError ?? renderApiError;

  return function tollgateAttribution(req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void): void {
    const ctx = getContext(req, res);
    const identity = ctx.identity;
    if (identity === undefined)
      return renderError(
        new ApiError('misconfigured_route', 'attribution() needs an auth middleware before it: nobody is identified.'),
        req,
        res,
      );
    let userId: Reading = identity.userId;
    if (userId === undefined && userHeader) userId = readHeaderValue(req, userHeader, maxLength);
    if (userId instanceof ApiError) return renderError(userId, req, res);
    let clientUserId = identity.clientUserId;
    if (userId === undefined && bodyUser) {
      const fromBody = readBodyUser(ctx.call, maxLength);
      if (fromBody instanceof ApiError) return renderError(fromBody, req, res);
      userId = fromBody?.userId;
      clientUserId = fromBody?.clientUserId ?? clientUserId;
    }
    let sessionId: Reading = identity.sessionId;
    if (sessionId === undefined) sessionId = readSessionHeader(req, sessionHeaders);
    if (sessionId instanceof ApiError) return renderError(sessionId, req, res);
    if (sessionId === undefined && sessionHeaders.length > 0) sessionId = readBodySession(ctx.call);
    const team = readTeam(req, identity, resolved);
    if (team instanceof ApiError) return renderError(team, req, res);
    let feature: Reading = identity.feature;
    if (feature === undefined && featureHeader) feature = readHeaderValue(req, featureHeader, maxLength);
    if (feature instanceof ApiError) return renderError(feature, req, res);
    const added = tagsHeader ? readTags(req, tagsHeader, identity.tags ?? [], resolved) : undefined;
    if (added instanceof ApiError) return renderError(added, req, res);
    const tags = added !== undefined && added.length > 0 ? added : identity.tags;

    for (const field of require) {
      const missing = field === 'user' ? !userId : field === 'feature' ? !feature : !tags || tags.length === 0;
      if (missing)
        return renderError(
          new ApiError('attribution_required', missingMessage(field, resolved, ctx.call), { param: field }),
          req,
          res,
        );
    }
    if (
      userId !== identity.userId ||
      clientUserId !== identity.clientUserId ||
      sessionId !== identity.sessionId ||
      team !== identity.team ||
      feature !== identity.feature ||
      tags !== identity.tags
    ) {
      // A new identity, never the one auth made: a key store may hand the same object to every request of the key.
      const attributed: Identity = Object.assign({}, identity);
      if (userId !== undefined) attributed.userId = userId;
      if (clientUserId !== undefined) attributed.clientUserId = clientUserId;
      if (sessionId !== undefined) attributed.sessionId = sessionId;
      if (team !== undefined) attributed.team = team;
      if (feature !== undefined) attributed.feature = feature;
      if (tags !== undefined) attributed.tags = tags;
      ctx.identity = attributed;
    }
    next();
  };
}
