// promptGuardrails: a prompt's length, deny patterns, personal data and a team's own check, before the provider call.
import type { NextFunction, Request, Response } from 'express';
import { ApiError, getContext } from '@tollgate/core';
import type { ProviderCall } from '@tollgate/core/provider-call';
import { declareOrAnswer } from '@tollgate/providers';
import type { ProviderAdapter } from '@tollgate/providers';

type Json = Record<string, unknown>;

/** A request whose prompt was read and broke no rule: what passing it, or checking it first, needs. */
interface ReadPrompt {
  req: Request;
  res: Response;
  next: NextFunction;
  call: ProviderCall;
  scan: PromptScan;
  /** The call's body as `mapPromptText` gave it back: with the masks (`pii: 'mask'`), else the body itself. */
  mapped: Json;
}
import { watchAnswerText } from './answer-text.js';
import { resolvePromptGuardrails } from './guardrail-options.js';
import type { GuardrailsConfig, GuardrailVerdict, PromptGuardrailsOptions } from './guardrail-options.js';
import { maskPii, noPii, PII_KINDS } from './pii.js';
import type { PiiCounts, PiiKind } from './pii.js';

/** What a refusal names, per PII kind (the rule is `pii:<kind>`). */
const PII_NAMES: Readonly<Record<PiiKind, string>> = {
  email: 'an e-mail address',
  phone: 'a phone number',
  card: 'a card number',
};
/** A check's own rule name, as far as the client is told it. */
const MAX_RULE_CHARS = 100;

/**
 * One walk over a request's prompt texts (the adapter's `mapPromptText`): their length, the first deny pattern one
 * matches, their personal data counted (and masked), and the texts kept for a check. Past `maxPromptChars` the rest
 * is only measured: the prompt is refused anyway.
 */
class PromptScan {
  chars = 0;
  /** Index of the first deny pattern a text matched; -1: none. */
  denied = -1;
  readonly pii: PiiCounts = noPii();
  readonly texts: string[] | undefined;

  constructor(private readonly config: GuardrailsConfig) {
    this.texts = config.check ? [] : undefined;
  }

  readonly visit = (text: string): string => {
    const { config } = this;
    this.chars += text.length;
    if (this.chars > config.maxPromptChars) return text;
    const { deny } = config;
    if (this.denied === -1)
      for (let i = 0; i < deny.length; i++)
        if (deny[i]!.test(text)) {
          this.denied = i;
          break;
        }
    if (config.pii === 'off') {
      this.texts?.push(text);
      return text;
    }
    const masked = maskPii(text, this.pii);
    this.texts?.push(masked);
    return config.pii === 'mask' ? masked : text;
  };

  /** The rule the prompt breaks, with what the client is told, or undefined. */
  refusal(): { rule: string; message: string } | undefined {
    const { maxPromptChars, pii } = this.config;
    if (this.chars > maxPromptChars)
      return {
        rule: 'maxPromptChars',
        message: `The prompt holds ${this.chars} characters, more than the ${maxPromptChars} accepted (guardrail "maxPromptChars").`,
      };
    if (this.denied !== -1) {
      const rule = `deny[${this.denied}]`;
      return { rule, message: `The prompt was refused by guardrail "${rule}".` };
    }
    if (pii !== 'block') return undefined;
    const kind = PII_KINDS.find((name) => this.pii[name] > 0);
    return kind === undefined
      ? undefined
      : {
          rule: `pii:${kind}`,
          message: `The prompt holds ${PII_NAMES[kind]}, which is not forwarded (guardrail "pii:${kind}"); remove it and send the request again.`,
        };
  }
}

/** A check's verdict read: passed, a refusal by its rule, or a verdict of the wrong shape (a bug of the check). */
function readVerdict(verdict: GuardrailVerdict): string | undefined | Error {
  if (verdict === undefined || verdict === null) return undefined;
  if (typeof verdict === 'object' && typeof verdict.rule === 'string' && verdict.rule.length > 0)
    return verdict.rule.slice(0, MAX_RULE_CHARS);
  return new TypeError(`a guardrails check returned ${JSON.stringify(verdict)}: undefined or { rule: string }`);
}

/** A refusal: told to `onRefused` by its rule, rendered to the client. */
function refuse(config: GuardrailsConfig, req: Request, res: Response, rule: string, error: ApiError): void {
  config.onRefused?.(rule, req);
  config.renderError(error, req, res);
}

/** The check threw, timed out or gave a verdict of the wrong shape: the prompt was not judged, so it is not sent (503). */
function checkFailed(config: GuardrailsConfig, req: Request, res: Response, cause: unknown): void {
  refuse(
    config,
    req,
    res,
    'check:failed',
    new ApiError('service_unavailable', 'The prompt check did not answer; retry shortly.', {
      headers: { 'Retry-After': 1 },
      layer: 'guardrails',
      cause,
    }),
  );
}

/** The prompt passed: its masks go into the call's body (and are counted), the answer is watched, the chain goes on. */
function passPrompt(config: GuardrailsConfig, { req, res, next, call, scan, mapped }: ReadPrompt): void {
  const { onMasked, onRefused } = config;
  // The body keeps its identity (the route's `req.body` is the same object): its top-level fields take the copies.
  if (mapped !== call.body) Object.assign(call.body, mapped);
  if (onMasked) for (const kind of PII_KINDS) if (scan.pii[kind] > 0) onMasked(kind, scan.pii[kind], req);
  if (config.onAnswerText) watchAnswerText(req, res, call, config.onAnswerText, (rule) => onRefused?.(rule, req));
  next();
}

/** Runs the team's check on the texts as they will be sent, under `checkTimeout`; then passes or refuses. */
function runCheck(config: GuardrailsConfig, prompt: ReadPrompt): void {
  const { req, res, next } = prompt;
  const judge = (verdict: GuardrailVerdict) => {
    const rule = readVerdict(verdict);
    if (rule instanceof Error) checkFailed(config, req, res, rule);
    else if (rule === undefined) passPrompt(config, prompt);
    else
      refuse(
        config,
        req,
        res,
        'check',
        new ApiError('prompt_rejected', `The prompt was refused by guardrail "check:${rule}".`),
      );
  };
  const controller = new AbortController();
  let verdict: GuardrailVerdict | PromiseLike<GuardrailVerdict>;
  try {
    verdict = config.check!({
      texts: prompt.scan.texts!,
      call: prompt.call,
      identity: getContext(req, res).identity,
      signal: controller.signal,
    });
  } catch (error) {
    checkFailed(config, req, res, error);
    return;
  }
  if (typeof (verdict as PromiseLike<unknown> | undefined)?.then !== 'function') {
    judge(verdict as GuardrailVerdict);
    return;
  }
  const timeoutMs = config.checkTimeoutMs;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new Error(`the prompt check took longer than ${timeoutMs} ms`);
      controller.abort(error);
      reject(error);
    }, timeoutMs);
  });
  Promise.race([verdict, late])
    .finally(() => clearTimeout(timer))
    .then(judge, (error: unknown) => checkFailed(config, req, res, error))
    .catch(next);
}

/**
 * Express middleware: checks each prompt before the provider call, after auth and before the estimate; what it refuses,
 * masks and runs: docs/architecture.md, "Prompt guardrails".
 */
export function promptGuardrails(options: PromptGuardrailsOptions = {}) {
  const config = resolvePromptGuardrails(options);
  const { renderError: render, check } = config;

  return function tollgatePromptGuardrails(req: Request, res: Response, next: NextFunction): void {
    const call = declareOrAnswer(req, res, next, config.adapter, {}, render);
    if (call === false) return;
    if (!call) {
      const message =
        'This route checks prompts but declares no provider call: declare its API (providerCall(), promptGuardrails({ api })).';
      render(new ApiError('misconfigured_route', message), req, res);
      return;
    }
    const mapPromptText = (call.adapter as ProviderAdapter).mapPromptText;
    if (!mapPromptText) {
      const message = `The guardrails cannot read the prompts of ${call.api} (its adapter has no mapPromptText): the call is refused rather than sent unchecked.`;
      refuse(config, req, res, 'unsupported', new ApiError('misconfigured_route', message));
      return;
    }
    if (getContext(req, res).estimate) {
      const message = 'Prompt guardrails run before the estimate: mount promptGuardrails() before meter().';
      render(new ApiError('misconfigured_route', message), req, res);
      return;
    }
    const scan = new PromptScan(config);
    const mapped = mapPromptText(call.body, scan.visit);
    const refusal = scan.refusal();
    if (refusal) refuse(config, req, res, refusal.rule, new ApiError('prompt_rejected', refusal.message));
    else if (check) runCheck(config, { req, res, next, call, scan, mapped });
    else passPrompt(config, { req, res, next, call, scan, mapped });
  };
}
