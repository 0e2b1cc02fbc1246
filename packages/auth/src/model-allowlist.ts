// modelAllowlist: refuses a request for a model its tier or its own key may not use (403 model_not_allowed).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ErrorRenderer, Identity } from '@tollgate/core';
import { ApiError, getContext, renderApiError, TollgateError } from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/options';
import { isModelAllowed, resolveTierModels } from '@tollgate/core/checks';
import { invalidCredentials } from './credentials.js';

interface ModelAllowlistOptions {
  /**
   * Models each tier may use (`*` = any, `prefix*` by prefix, dated ids match their family).
   * An identity whose tier is not listed gets `otherTiers`. The same rule as tierPolicy's
   * (core `resolveTierModels`).
   * @default no tier restriction
   */
  tiers?: Record<string, string[]>;
  /**
   * Models for identities whose tier is absent from `tiers` (or who have no tier).
   * Only used when `tiers` is set.
   * @default [] (nothing: an unknown tier fails closed)
   */
  otherTiers?: string[];
  /**
   * Where the requested model is read from.
   * @default the declared provider call's model (`req.tollgate.call`), else the body's `model` string
   */
  readModel?: (req: IncomingMessage) => string | undefined;
  /**
   * Renders denials.
   * @default core renderApiError
   */
  renderError?: ErrorRenderer;
}

const KNOWN_OPTIONS = ['tiers', 'otherTiers', 'readModel', 'renderError'] as const;
/** Long enough for any real model id; a longer one is cut before it is quoted back. */
const MAX_QUOTED_MODEL = 100;

function isPatternList(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((pattern) => typeof pattern === 'string' && pattern !== '');
}

/** The model as it may appear in an error message: printable and bounded. */
function quotable(model: string): string {
  const printable = model.replace(/[^\x20-\x7e]/g, '?');
  return printable.length > MAX_QUOTED_MODEL ? `${printable.slice(0, MAX_QUOTED_MODEL)}...` : printable;
}

/** The model of the declared call (whatever its API's shape), else a `model` string in the body. */
function callModel(req: IncomingMessage): string | undefined {
  const carrier = req as IncomingMessage & { body?: unknown; tollgate?: { call?: { model?: string } } };
  const declared = carrier.tollgate?.call?.model;
  if (declared !== undefined) return declared;
  const body = carrier.body as { model?: unknown } | undefined;
  return typeof body?.model === 'string' && body.model.length > 0 ? body.model : undefined;
}

/**
 * Express middleware (after body parsing and auth): the requested model must be allowed by
 * the identity's tier (`tiers`) and by the identity's own `models`, checked with core
 * `isModelAllowed`. A request without a model passes (body validation is not ours).
 */
export function modelAllowlist(options: ModelAllowlistOptions = {}) {
  assertKnownOptions(options, KNOWN_OPTIONS, 'ERR_TG_AUTH_UNKNOWN_OPTION', 'modelAllowlist');
  const tiers = options.tiers;
  if (tiers !== undefined) {
    if (typeof tiers !== 'object' || tiers === null)
      throw new TollgateError(
        'ERR_TG_AUTH_INVALID_OPTION',
        'modelAllowlist(): tiers must map tier names to model lists',
      );
    for (const [tier, models] of Object.entries(tiers)) {
      if (!isPatternList(models))
        throw new TollgateError(
          'ERR_TG_AUTH_INVALID_OPTION',
          `modelAllowlist(): tiers.${tier} must be an array of model names or patterns`,
        );
    }
  }
  const otherTiers = options.otherTiers;
  if (otherTiers !== undefined && !isPatternList(otherTiers)) {
    const message = 'modelAllowlist(): otherTiers must be an array of model names or patterns';
    throw new TollgateError('ERR_TG_AUTH_INVALID_OPTION', message);
  }
  const modelsOf = resolveTierModels(tiers, otherTiers ? { otherTiers } : {});
  const readModel = options.readModel ?? callModel;
  const renderError = options.renderError ?? renderApiError;

  /** Which rule refuses the model, if any. */
  function refusal(model: string, identity: Identity): string | undefined {
    const allowed = modelsOf(identity.tier);
    if (allowed && !isModelAllowed(model, allowed)) {
      return identity.tier !== undefined ? `the "${quotable(identity.tier)}" tier` : 'this credential';
    }
    if (identity.models !== undefined && !isModelAllowed(model, identity.models)) return 'this credential';
    return undefined;
  }

  return function tollgateModelAllowlist(
    req: IncomingMessage,
    res: ServerResponse,
    next: (err?: unknown) => void,
  ): void {
    const context = getContext(req, res);
    const identity = context.identity;
    const model = readModel(req);
    if (model === undefined) return next();
    // Anonymous callers (optional auth) are judged by the rules for no tier; only a missing identity is a 401.
    if (!identity) return renderError(invalidCredentials('tollgate', false), req, res);
    const refusedBy = refusal(model, identity);
    if (refusedBy === undefined) return next();
    renderError(
      new ApiError('model_not_allowed', `The model "${quotable(model)}" is not available to ${refusedBy}.`, {
        param: 'model',
      }),
      req,
      res,
    );
  };
}
