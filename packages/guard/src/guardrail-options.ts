// promptGuardrails' options (the proxy config's `guardrails`), resolved once: deny patterns compiled, the hooks checked.
import type { IncomingMessage } from 'node:http';
import { parseDuration, renderApiError, TollgateError } from '@tollgate/core';
import type { ErrorRenderer, Identity, ProviderApi } from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/options';
import type { ProviderCall } from '@tollgate/core/provider-call';
import { adapterFor } from '@tollgate/providers';
import type { ProviderAdapter } from '@tollgate/providers';
import type { PiiKind } from './pii.js';

/** What a check or an answer hook says: nothing (the text passes), or the rule it broke. */
export type GuardrailVerdict = undefined | void | { rule: string };

/** What a custom prompt check is given. */
export interface PromptCheckInput {
  /** The prompt's texts in prompt order, as the upstream will receive them (masked when `pii` is `mask`). */
  texts: readonly string[];
  /** The declared provider call (its API, model, body). */
  call: ProviderCall;
  identity: Identity | undefined;
  /** Aborted once `checkTimeout` passed: hand it to the classifier's `fetch`. */
  signal: AbortSignal;
}

/** A team's own check of a prompt (a classifier): refuses it by naming a rule, synchronously or not. */
export type PromptCheck = (prompt: PromptCheckInput) => GuardrailVerdict | Promise<GuardrailVerdict>;

/** The answer a hook reads, the same object for each of its texts. */
export interface AnswerTextContext {
  call: ProviderCall;
  identity: Identity | undefined;
  /** True for a streamed answer (each text is a delta as it passes), false for a whole JSON answer. */
  streamed: boolean;
}

/**
 * Reads an answer's text as it passes to the client: a stream's deltas one by one, a JSON answer's texts once it is
 * whole (message text, tool-call arguments, reasoning: what its API's adapter reads as output). Synchronous, since it
 * runs while the bytes pass. Naming a rule stops the answer: the upstream call is aborted and the connection closed
 * before the bytes that carried the text leave.
 */
export type AnswerTextHook = (text: string, answer: AnswerTextContext) => GuardrailVerdict;

/** Off, or what PII in a prompt does: `mask` replaces it before the upstream sees it, `block` refuses the prompt. */
export type PiiMode = 'off' | 'mask' | 'block';
const PII_MODES: readonly PiiMode[] = ['off', 'mask', 'block'];

export interface PromptGuardrailsOptions {
  /**
   * The provider API of the route, declared here when no earlier piece declared it (as `meter({ api })`).
   * @default the call declared on the request (`providerCall(api)` before it)
   */
  api?: ProviderApi | ProviderAdapter;
  /**
   * The most characters (UTF-16 code units, as JavaScript counts them) the prompt's texts may hold together; a
   * longer prompt is refused, naming the rule `maxPromptChars`.
   * @default no limit
   */
  maxPromptChars?: number;
  /**
   * Patterns no prompt text may match (each text is tested on its own); a match is refused, naming the rule by its
   * index (`deny[0]`). A RegExp, or a pattern string whose leading `(?i)`, `(?m)`, `(?s)` (or together, `(?is)`)
   * sets the flags, as RE2 and PCRE read them: JavaScript has no inline flags elsewhere in a pattern.
   * @default none
   */
  deny?: readonly (string | RegExp)[];
  /**
   * E-mail addresses, phone numbers and Luhn-valid card numbers in prompt texts (see the README for what counts):
   * `mask` replaces them with `[EMAIL]`, `[PHONE]`, `[CARD]` before the upstream sees them (and before the estimate
   * counts them); `block` refuses the prompt, naming the rule `pii:email`, `pii:phone` or `pii:card`.
   * @default 'off'
   */
  pii?: PiiMode;
  /** A team's own check, run after the rules above on the texts the upstream would receive. @default none */
  check?: PromptCheck;
  /** How long `check` may take; past it, or when it throws, the request gets 503 (fail closed). Ms or `"2s"`. @default '2s' */
  checkTimeout?: number | string;
  /** Reads the answer's text as it passes, and may stop it (see `AnswerTextHook`). @default none */
  onAnswerText?: AnswerTextHook;
  /** Told how many of one kind were masked in a request (never the text). @default none */
  onMasked?: (kind: PiiKind, count: number, req: IncomingMessage) => void;
  /**
   * Told of each refusal by its rule, for metrics: `maxPromptChars`, `deny[<i>]`, `pii:<kind>`, `check`,
   * `check:failed` (the check threw or timed out), `answer`, `answer:failed` (the answer hook threw), `unsupported`
   * (the API's adapter cannot read prompts). A bounded set: a check's own rule names are not among them.
   * @default none
   */
  onRefused?: (rule: string, req: IncomingMessage) => void;
  /** Renders the 400, the 500 and the 503. @default core renderApiError */
  renderError?: ErrorRenderer;
}

export interface GuardrailsConfig {
  adapter: ProviderAdapter | undefined;
  maxPromptChars: number;
  deny: RegExp[];
  pii: PiiMode;
  check: PromptCheck | undefined;
  checkTimeoutMs: number;
  onAnswerText: AnswerTextHook | undefined;
  onMasked: PromptGuardrailsOptions['onMasked'];
  onRefused: PromptGuardrailsOptions['onRefused'];
  renderError: ErrorRenderer;
}

const OPTION_NAMES = [
  'api',
  'maxPromptChars',
  'deny',
  'pii',
  'check',
  'checkTimeout',
  'onAnswerText',
  'onMasked',
  'onRefused',
  'renderError',
] as const;
const CODE = 'ERR_TG_GUARD_INVALID_OPTION';
/** Leading inline flags, the only place JavaScript patterns cannot take them. */
const INLINE_FLAGS = /^\(\?([ims]+)\)/;
/** An inline flag group anywhere (`(?i)`, `(?i:...)`, `(?x)`), for the hint when a pattern does not compile. */
const INLINE_FLAG_GROUP = /\(\?[a-zA-Z-]+[):]/;

/** One deny pattern as a RegExp without state (no `g` or `y`: each text is tested from its start). */
function compileDeny(pattern: unknown, index: number): RegExp {
  const name = `deny[${index}]`;
  if (pattern instanceof RegExp) return new RegExp(pattern.source, pattern.flags.replace(/[gy]/g, ''));
  if (typeof pattern !== 'string' || pattern.length === 0)
    throw new TollgateError(CODE, `${name} must be a non-empty pattern string or a RegExp`);
  const inline = INLINE_FLAGS.exec(pattern);
  const source = inline ? pattern.slice(inline[0].length) : pattern;
  try {
    return new RegExp(source, inline ? [...new Set(inline[1])].join('') : '');
  } catch (error) {
    const hint = INLINE_FLAG_GROUP.test(source)
      ? ' (JavaScript takes inline flags only at the start of a pattern: (?i), (?m), (?s))'
      : '';
    throw new TollgateError(CODE, `${name} is not a valid regular expression: ${(error as Error).message}${hint}`, {
      cause: error,
    });
  }
}

function optionalFunction<T>(value: T | undefined, name: string): T | undefined {
  if (value !== undefined && typeof value !== 'function') throw new TollgateError(CODE, `${name} must be a function`);
  return value;
}

/** Validates and resolves the options; errors name the option (`deny[1] is not a valid regular expression: ...`). */
export function resolvePromptGuardrails(options: PromptGuardrailsOptions): GuardrailsConfig {
  assertKnownOptions(options, OPTION_NAMES, 'ERR_TG_GUARD_UNKNOWN_OPTION', 'promptGuardrails');
  const { maxPromptChars, deny = [], pii = 'off' } = options;
  if (
    maxPromptChars !== undefined &&
    (typeof maxPromptChars !== 'number' || !Number.isSafeInteger(maxPromptChars) || maxPromptChars <= 0)
  )
    throw new TollgateError(CODE, `maxPromptChars must be a positive integer; got ${JSON.stringify(maxPromptChars)}`);
  if (!Array.isArray(deny)) throw new TollgateError(CODE, 'deny must be an array of patterns');
  if (!PII_MODES.includes(pii))
    throw new TollgateError(CODE, `pii must be one of ${PII_MODES.join(', ')}; got ${JSON.stringify(pii)}`);
  let checkTimeoutMs: number;
  try {
    checkTimeoutMs = parseDuration(options.checkTimeout ?? '2s', 'checkTimeout');
  } catch (error) {
    throw new TollgateError(CODE, (error as Error).message.replace(/ \(ERR_.*$/, ''), { cause: error });
  }
  const adapter = options.api === undefined ? undefined : adapterFor(options.api, 'promptGuardrails() api');
  if (adapter && !adapter.mapPromptText)
    throw new TollgateError(
      CODE,
      `api: the ${adapter.api} adapter cannot read prompt texts (it has no mapPromptText), so no guardrail could check them`,
    );
  return {
    adapter,
    maxPromptChars: maxPromptChars ?? Infinity,
    deny: deny.map(compileDeny),
    pii,
    check: optionalFunction(options.check, 'check'),
    checkTimeoutMs,
    onAnswerText: optionalFunction(options.onAnswerText, 'onAnswerText'),
    onMasked: optionalFunction(options.onMasked, 'onMasked'),
    onRefused: optionalFunction(options.onRefused, 'onRefused'),
    renderError: optionalFunction(options.renderError, 'renderError') ?? renderApiError,
  };
}
