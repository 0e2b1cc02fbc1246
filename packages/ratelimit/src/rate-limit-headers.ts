// Rate limit headers: IETF RateLimit/RateLimit-Policy (draft-8) and OpenAI's x-ratelimit-*, most restrictive layer only.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError, getContext, type ErrorRenderer } from '@tollgate/core';

export type QuotaKind = 'requests' | 'tokens';

/** Where one counted limit stands for this request. */
export interface LimitReport {
  kind: QuotaKind;
  /** The layer that produced it, for messages. */
  layer: string;
  limit: number;
  remaining: number;
  /** Epoch ms when the window resets. */
  resetAt: number;
  windowMs: number;
  /** True when this limit refused the request. */
  denied: boolean;
}

declare module '@tollgate/core' {
  interface ContextVariableMap {
    /**
     * What a response reports, in the request's context: not in a WeakMap (an entry per short-lived
     * response is work for every garbage collection), and not on the response itself (Express
     * re-prototypes req and res, and on such an object every new property costs V8 a fresh hidden
     * class, microseconds each).
     */
    'ratelimit.reports': ResponseReports;
  }
}

interface ResponseReports {
  requests?: LimitReport;
  tokens?: LimitReport;
  /** Inside batchLimitHeaders: the headers are written once at the end. */
  batching: boolean;
  changed: boolean;
}

function reportsOf(res: ServerResponse): ResponseReports {
  const context = getContext(res.req, res);
  let reports = context.get('ratelimit.reports');
  if (reports === undefined) context.set('ratelimit.reports', (reports = { batching: false, changed: false }));
  return reports;
}

/** Denied beats allowed; then fewer remaining; then the later reset (the longer wait). */
export function isMoreRestrictive(candidate: LimitReport, current: LimitReport): boolean {
  if (candidate.denied !== current.denied) return candidate.denied;
  if (candidate.remaining !== current.remaining) return candidate.remaining < current.remaining;
  return candidate.resetAt > current.resetAt;
}

/** The most restrictive of several reports. */
export function mostRestrictive(reports: readonly LimitReport[]): LimitReport | undefined {
  let winner: LimitReport | undefined;
  for (const report of reports) if (!winner || isMoreRestrictive(report, winner)) winner = report;
  return winner;
}

/** Whole seconds until `at`, never below 0. */
function secondsUntil(at: number, now = Date.now()): number {
  return Math.max(0, Math.ceil((at - now) / 1000));
}

/** Seconds for `Retry-After`: at least 1, so a client never retries in a tight loop. */
function retryAfterSeconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

/** Milliseconds as a decimal fraction of a second without trailing zeros: 500 is `.5`, 50 is `.05`, 0 is ''. */
function fraction(ms: number): string {
  if (ms === 0) return '';
  if (ms % 100 === 0) return `.${ms / 100}`;
  if (ms % 10 === 0) return ms < 100 ? `.0${ms / 10}` : `.${ms / 10}`;
  return ms < 10 ? `.00${ms}` : ms < 100 ? `.0${ms}` : `.${ms}`;
}

/** A duration the way OpenAI writes it (Go style): `20ms`, `1s`, `1.5s`, `6m0s`, `1h2m3s`. */
export function openAiDuration(ms: number): string {
  const total = Math.max(0, Math.round(ms));
  if (total < 1000) return `${total}ms`;
  const hours = Math.floor(total / 3_600_000);
  const minutes = Math.floor((total % 3_600_000) / 60_000);
  const secondsText = `${Math.floor((total % 60_000) / 1000)}${fraction(total % 1000)}s`;
  if (hours > 0) return `${hours}h${minutes}m${secondsText}`;
  if (minutes > 0) return `${minutes}m${secondsText}`;
  return secondsText;
}

/** A window for messages: `day`, `minute`, `10 minutes`, `30 s`. */
export function describeWindow(windowMs: number): string {
  if (windowMs % 86_400_000 === 0) return windowMs === 86_400_000 ? 'day' : `${windowMs / 86_400_000} days`;
  if (windowMs % 3_600_000 === 0) return windowMs === 3_600_000 ? 'hour' : `${windowMs / 3_600_000} hours`;
  if (windowMs % 60_000 === 0) return windowMs === 60_000 ? 'minute' : `${windowMs / 60_000} minutes`;
  return windowMs % 1000 === 0 ? `${windowMs / 1000} s` : `${windowMs} ms`;
}

const HEADER_NAMES = {
  requests: {
    limit: 'x-ratelimit-limit-requests',
    remaining: 'x-ratelimit-remaining-requests',
    reset: 'x-ratelimit-reset-requests',
  },
  tokens: {
    limit: 'x-ratelimit-limit-tokens',
    remaining: 'x-ratelimit-remaining-tokens',
    reset: 'x-ratelimit-reset-tokens',
  },
} as const;

/** A kind's policy text for one limit and window, kept while they stay the same (they rarely change between requests). */
interface PolicyText {
  limit: number;
  windowMs: number;
  /** `String(limit)` */
  limitText: string;
  /** `"requests";q=60;w=60` */
  policy: string;
}

const lastPolicy: Record<QuotaKind, PolicyText | undefined> = { requests: undefined, tokens: undefined };

function policyTextOf(report: LimitReport): PolicyText {
  const last = lastPolicy[report.kind];
  if (last && last.limit === report.limit && last.windowMs === report.windowMs) return last;
  const limitText = String(report.limit);
  const text = {
    limit: report.limit,
    windowMs: report.windowMs,
    limitText,
    policy: `"${report.kind}";q=${limitText};w=${Math.ceil(report.windowMs / 1000)}`,
  };
  lastPolicy[report.kind] = text;
  return text;
}

/** Writes one kind's OpenAI headers; returns its IETF state item. */
function writeKindHeaders(
  res: ServerResponse,
  kind: QuotaKind,
  report: LimitReport,
  policy: PolicyText,
  now: number,
): string {
  const names = HEADER_NAMES[kind];
  const remaining = String(report.remaining);
  res.setHeader(names.limit, policy.limitText);
  res.setHeader(names.remaining, remaining);
  res.setHeader(names.reset, openAiDuration(report.resetAt - now));
  return `"${kind}";r=${remaining};t=${secondsUntil(report.resetAt, now)}`;
}

/** The last `RateLimit-Policy` value written, and the policies it joins (they rarely change between requests). */
let lastPolicies = {
  requests: undefined as PolicyText | undefined,
  tokens: undefined as PolicyText | undefined,
  text: '',
};

function policiesText(requests: PolicyText | undefined, tokens: PolicyText | undefined): string {
  if (lastPolicies.requests === requests && lastPolicies.tokens === tokens) return lastPolicies.text;
  const text = requests && tokens ? `${requests.policy}, ${tokens.policy}` : (requests ?? tokens)!.policy;
  lastPolicies = { requests, tokens, text };
  return text;
}

function writeHeaders(res: ServerResponse, reports: ResponseReports): void {
  const now = Date.now();
  const { requests, tokens } = reports;
  if (!requests && !tokens) return;
  const requestsPolicy = requests && policyTextOf(requests);
  const tokensPolicy = tokens && policyTextOf(tokens);
  const requestsState = requests && writeKindHeaders(res, 'requests', requests, requestsPolicy!, now);
  const tokensState = tokens && writeKindHeaders(res, 'tokens', tokens, tokensPolicy!, now);
  res.setHeader('RateLimit-Policy', policiesText(requestsPolicy, tokensPolicy));
  res.setHeader(
    'RateLimit',
    requestsState && tokensState ? `${requestsState}, ${tokensState}` : (requestsState ?? tokensState)!,
  );
}

/**
 * Records a limiter's most restrictive layer on the response and rewrites the headers.
 * Across limiters of the same kind (a global one, then a per-key one) the most restrictive
 * stays reported; requests and tokens are reported side by side.
 */
export function reportLimit(res: ServerResponse, report: LimitReport): void {
  if (res.headersSent) return;
  const reports = reportsOf(res);
  const current = reports[report.kind];
  if (current && !isMoreRestrictive(report, current)) return;
  reports[report.kind] = report;
  if (reports.batching) reports.changed = true;
  else writeHeaders(res, reports);
}

/**
 * Runs `run` (several limiters committing, as combineLimits does) with the headers written once
 * at the end, for every report made inside, instead of rewritten by each report.
 */
export function batchLimitHeaders(res: ServerResponse, run: () => void): void {
  const reports = reportsOf(res);
  if (reports.batching) {
    run();
    return;
  }
  reports.batching = true;
  reports.changed = false;
  try {
    run();
  } finally {
    reports.batching = false;
    if (reports.changed && !res.headersSent) writeHeaders(res, reports);
  }
}

/**
 * Answers 429 for a window limit: reports the refusing layer in the headers, `Retry-After`, and
 * a message naming the layer and its limit (or the wait, for a request that never reached the head of the queue).
 */
export function refuseOverLimit(
  render: ErrorRenderer,
  req: IncomingMessage,
  res: ServerResponse,
  kind: QuotaKind,
  winner: LimitReport | undefined,
  retryAfterMs: number,
  waitedMs: number | undefined,
): void {
  const retryAfter = retryAfterSeconds(retryAfterMs);
  if (winner) reportLimit(res, winner);
  const left = kind === 'tokens' && winner ? `, ${winner.remaining} left` : '';
  const message = winner
    ? `Rate limit reached for ${kind} (${winner.layer}): limit ${winner.limit} per ${describeWindow(winner.windowMs)}${left}. Please try again in ${retryAfter}s.`
    : `Rate limit reached for ${kind}: still no room after waiting ${waitedMs ?? 0} ms. Please try again in ${retryAfter}s.`;
  const code = kind === 'tokens' ? 'tokens_rate_limit_exceeded' : 'rate_limit_exceeded';
  render(new ApiError(code, message, { headers: { 'Retry-After': retryAfter } }), req, res);
}
