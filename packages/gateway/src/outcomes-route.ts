// POST /v1/outcomes: a caller reports what one of its requests or conversations achieved, so cost per outcome can be read.
import { ApiError, renderApiError, usdToNano } from '@tollgate/core';
import { recordOutcome } from '@tollgate/metering';
import type { LedgerLocation, OutcomeReport, Queryable, RecordedOutcome } from '@tollgate/metering';
import type { NextFunction, Request, RequestHandler, Response } from 'express';

interface OutcomesRouteOptions {
  /** The usage ledger; without one the route answers 404. */
  ledger: Queryable | undefined;
  location: LedgerLocation;
  /** Writes out what the usage sinks hold: a record of a request that just ended may still be queued. */
  flushUsage: () => Promise<void>;
}

const ID = /^[\w.:@-]{1,128}$/;
const KIND = /^[a-z][a-z0-9_.-]{0,63}$/;
const MAX_VALUE_USD = 9_000_000;
const FIELDS = new Set(['request_id', 'conversation_id', 'kind', 'value_usd']);

function badField(param: string, message: string): ApiError {
  return new ApiError('invalid_request', message, { param });
}

/** Reads the body into a report for the caller's tenant; throws a 400 naming the field at fault. */
function readReport(body: unknown, tenantId: string): OutcomeReport {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw badField('body', 'The body must be a JSON object.');
  const fields = body as Record<string, unknown>;
  const unknown = Object.keys(fields).find((name) => !FIELDS.has(name));
  if (unknown !== undefined)
    throw badField(
      unknown.slice(0, 64),
      `Unknown field ${JSON.stringify(unknown.slice(0, 64))}: an outcome has request_id or conversation_id, kind and value_usd.`,
    );
  const hasRequest = fields.request_id !== undefined;
  if (hasRequest === (fields.conversation_id !== undefined)) {
    throw badField(
      'request_id',
      'Give one of request_id (the x-request-id the proxy returned) or conversation_id (the x-conversation-id sent on the requests).',
    );
  }
  const param = hasRequest ? 'request_id' : 'conversation_id';
  const subjectId = fields[param];
  if (typeof subjectId !== 'string' || !ID.test(subjectId))
    throw badField(param, `${param} must be a string of 1 to 128 letters, digits or . : @ - _.`);
  if (typeof fields.kind !== 'string' || !KIND.test(fields.kind)) {
    throw badField(
      'kind',
      'kind must be a lower-case word such as "resolved" or "converted" (a-z, 0-9, _ . -; at most 64).',
    );
  }
  const value = fields.value_usd;
  if (
    value !== undefined &&
    (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > MAX_VALUE_USD)
  ) {
    throw badField('value_usd', `value_usd must be a number of USD from 0 to ${MAX_VALUE_USD}.`);
  }
  return {
    tenantId,
    ...(hasRequest ? { requestId: subjectId } : { conversationId: subjectId }),
    kind: fields.kind,
    ...(value === undefined ? {} : { valueNanoUsd: usdToNano(value) }),
  };
}

function outcomeJson(outcome: RecordedOutcome) {
  return {
    object: 'outcome',
    id: outcome.id,
    kind: outcome.kind,
    [outcome.subject === 'request' ? 'request_id' : 'conversation_id']: outcome.subjectId,
    value_usd: outcome.valueNanoUsd === null ? null : outcome.valueNanoUsd / 1e9,
    created_at: outcome.at,
    // False: reported before; the first report (and its value) stands, nothing is counted twice.
    created: outcome.created,
    requests: outcome.requests,
    cost_usd: outcome.costNanoUsd / 1e9,
  };
}

/**
 * The route behind the caller's own API key: the outcome is attached to the key's tenant, and only
 * that tenant's requests are matched, so a caller can neither see nor touch another tenant's.
 */
export function outcomesRoute(options: OutcomesRouteOptions): RequestHandler {
  const { ledger, location, flushUsage } = options;
  return async function reportOutcome(req: Request, res: Response, next: NextFunction) {
    try {
      if (!ledger)
        throw new ApiError(
          'not_found',
          'Outcomes are kept in the usage ledger, and this proxy has none (set postgresUrl or embeddedLedger).',
        );
      const tenantId = req.tollgate.identity?.tenantId;
      if (tenantId === undefined)
        throw new ApiError(
          'insufficient_scope',
          'Outcomes are recorded per tenant, and this credential belongs to no tenant.',
        );
      const report = readReport(req.body, tenantId);
      let outcome = await recordOutcome(ledger, report, location);
      if (!outcome) {
        // The record of a request that ended a moment ago may still wait in a sink's batch.
        await flushUsage();
        outcome = await recordOutcome(ledger, report, location);
      }
      if (!outcome) {
        const which =
          report.requestId === undefined ? `conversation ${report.conversationId}` : `request ${report.requestId}`;
        throw new ApiError(
          'not_found',
          `No recorded ${which} for this tenant: report an outcome with the x-request-id the proxy returned, or an x-conversation-id sent on the requests.`,
        );
      }
      res.status(outcome.created ? 201 : 200).json(outcomeJson(outcome));
    } catch (error) {
      if (error instanceof ApiError) renderApiError(error, req, res);
      else next(error);
    }
  };
}
