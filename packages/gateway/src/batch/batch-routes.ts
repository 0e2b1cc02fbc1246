// The Batch API (/v1/files, /v1/batches) in the gateway: input files read and priced at their worst case on the way
// up, jobs charged that worst case before the upstream sees them, settled from their output file (docs/batch.md).
import { randomUUID } from 'node:crypto';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ApiError, renderApiError } from '@tollgate/core';
import type { Identity, Pricing, UsageRecord } from '@tollgate/core';
import type { BudgetGuard } from '@tollgate/budget';
import { formFile } from '@tollgate/providers/routes';
import { exactUsd } from '@tollgate/core/costs';
import type { BatchBook, BatchJob } from './batch-book.js';
import { BATCH_ENDPOINTS, readBatchInput } from './batch-input.js';
import { outputRecords } from './batch-output.js';

declare module '@tollgate/core' {
  interface ContextVariableMap {
    /** The model of a Batch file's line being checked against the caller's tier. */
    'gateway.batchModel': string;
  }
}

/** The OpenAI upstream Batch jobs go to: its base URL (`.../v1`) and key. */
export interface BatchUpstream {
  baseUrl: string;
  apiKey: string | undefined;
}

/** What the Batch routes are built from. */
interface BatchParts {
  upstream: BatchUpstream;
  book: BatchBook;
  pricing: Pricing;
  budget: BudgetGuard;
  /** The tier policy's model rule, reading the model under `gateway.batchModel`. */
  modelAllowed: RequestHandler;
  /** Writes a usage record to the meter's sinks. */
  deliver: (record: UsageRecord) => void;
  now?: () => number;
}

/** The states a job ends in: its spend is settled then. */
const FINISHED = new Set(['completed', 'failed', 'expired', 'cancelled']);

/** The owner files and jobs are kept under: the caller's tenant, else its key. */
function ownerOf(identity: Identity | undefined): string {
  if (identity?.tenantId) return `tenant:${identity.tenantId}`;
  return `key:${identity?.keyId ?? ''}`;
}

/** How long an upstream Batch call may take, answer included. */
const UPSTREAM_TIMEOUT_MS = 120_000;

/** Calls the upstream with the gateway's key; a failure is 502 `upstream_error`, no answer in time 504. */
async function callUpstream(
  upstream: BatchUpstream,
  path: string,
  init: RequestInit = {},
): Promise<globalThis.Response> {
  const headers = new Headers(init.headers);
  if (upstream.apiKey) headers.set('authorization', `Bearer ${upstream.apiKey}`);
  const url = `${upstream.baseUrl.replace(/\/$/, '')}${path}`;
  try {
    const answer = await fetch(url, { ...init, headers, signal: AbortSignal.timeout(UPSTREAM_TIMEOUT_MS) });
    // Read whole here, under the same deadline: what the routes pass on and read (a job, an output file).
    const body = await answer.arrayBuffer();
    return new globalThis.Response(body, { status: answer.status, headers: answer.headers });
  } catch (error) {
    const timedOut = error instanceof Error && error.name === 'TimeoutError';
    throw new ApiError(
      timedOut ? 'upstream_timeout' : 'upstream_error',
      timedOut ? 'The upstream did not answer in time.' : 'The upstream could not be reached.',
    );
  }
}

/**
 * Sends the upstream's answer on (status, content type, body). An error answer has the gateway's key taken out of
 * it: an upstream may echo what it was sent.
 */
async function passOn(answer: globalThis.Response, res: Response, apiKey: string | undefined): Promise<void> {
  let body = Buffer.from(await answer.arrayBuffer());
  if (!answer.ok && apiKey && body.includes(apiKey))
    body = Buffer.from(body.toString('utf8').split(apiKey).join('[redacted]'));
  res.status(answer.status);
  const type = answer.headers.get('content-type');
  if (type) res.setHeader('content-type', type);
  res.end(body);
}

/** The upstream's JSON answer, or undefined when it is not JSON. */
async function jsonOf(answer: globalThis.Response): Promise<Record<string, unknown> | undefined> {
  try {
    const body = (await answer.clone().json()) as unknown;
    return typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Runs the tier's model rule on each model in turn; calls `done` when every one passed (a refusal answers). */
function checkModels(allowed: RequestHandler, models: readonly string[], done: () => void): RequestHandler {
  return function checkBatchModels(req: Request, res: Response, next: NextFunction): void {
    const step = (index: number): void => {
      if (index === models.length) return done();
      req.tollgate.set('gateway.batchModel', models[index]!);
      allowed(req, res, (error?: unknown) => (error ? next(error) : step(index + 1)));
    };
    step(0);
  };
}

/** An ApiError answered as the client's error; anything else to the error handler. */
function answerError(error: unknown, req: Request, res: Response, next: NextFunction): void {
  if (error instanceof ApiError) renderApiError(error, req, res);
  else next(error);
}

function notFound(what: string, id: string): ApiError {
  return new ApiError('not_found', `No ${what} "${id.slice(0, 100)}" of yours is known to this gateway.`);
}

/** The Batch routes' handlers, and the settle of a finished job. */
export interface BatchHandlers {
  uploadFile: RequestHandler;
  readFile: RequestHandler;
  createBatch: RequestHandler;
  batchCall: RequestHandler;
  settleJob(job: BatchJob, batch: Record<string, unknown>): Promise<void>;
  /** Asks the upstream about open jobs (at most `limit`) and settles those it says finished: the ones nobody polls. */
  sweep(limit: number): Promise<void>;
}

/** The Batch routes' handlers, each run after the caller is known (and, for uploads, its form read). */
export function batchHandlers(parts: BatchParts): BatchHandlers {
  const { upstream, book, pricing, budget } = parts;
  const now = parts.now ?? Date.now;

  /** Settles a finished job once: its output's records written, its charge corrected to their cost. */
  async function settleJob(job: BatchJob, batch: Record<string, unknown>): Promise<void> {
    if (!(await book.claimSettle(job.owner, job.batchId))) return;
    let records: UsageRecord[] = [];
    let unreadable = 0;
    const outputId = batch.output_file_id;
    if (typeof outputId === 'string' && outputId.length > 0) {
      const answer = await callUpstream(upstream, `/files/${encodeURIComponent(outputId)}/content`).catch(
        () => undefined,
      );
      if (!answer?.ok) unreadable = 1;
      else ({ records, unreadable } = outputRecords(job, await answer.text(), pricing, now()));
    }
    const cost = records.reduce((sum, record) => sum + record.costNanoUsd, 0);
    for (const record of records) parts.deliver(record);
    // An output that could not be read is not known to cost less than its worst case: it stays charged whole.
    if (unreadable === 0) await budget.refundSpend(job.scopes, job.worstCaseNanoUsd - cost);
  }

  /** POST /v1/files: a batch input file, read and priced on its way up. */
  const uploadFile: RequestHandler = async (req, res, next) => {
    try {
      const ctx = req.tollgate;
      const form = ctx.get('providers.uploadForm');
      if (!form) throw new ApiError('invalid_request', 'This route takes a multipart/form-data upload.');
      const fields = req.body as Record<string, unknown>;
      if (fields.purpose !== 'batch')
        throw new ApiError('invalid_request', 'This gateway takes files of purpose "batch" only.', {
          param: 'purpose',
        });
      const file = await formFile(form, 'file');
      if (!file) throw new ApiError('invalid_request', 'The form holds no file.', { param: 'file' });
      const input = readBatchInput(file.toString('utf8'), pricing);
      checkModels(parts.modelAllowed, input.models, () => {
        const sent = callUpstream(upstream, '/files', {
          method: 'POST',
          headers: { 'content-type': form.contentType },
          body: form.bytes,
        });
        sent
          .then(async (answer) => {
            const body = answer.ok ? await jsonOf(answer) : undefined;
            if (body && typeof body.id === 'string')
              await book.putFile({ owner: ownerOf(ctx.identity), fileId: body.id, ...input });
            await passOn(answer, res, upstream.apiKey);
          })
          .catch((error: unknown) => answerError(error, req, res, next));
      })(req, res, next);
    } catch (error) {
      answerError(error, req, res, next);
    }
  };

  /** GET /v1/files/<id>[/content]: the owner's files only. */
  const readFile: RequestHandler = async (req, res, next) => {
    try {
      const id = String(req.params.id);
      if (!(await book.file(ownerOf(req.tollgate.identity), id))) {
        renderApiError(notFound('file', id), req, res);
        return;
      }
      const tail = req.path.endsWith('/content') ? '/content' : '';
      await passOn(await callUpstream(upstream, `/files/${encodeURIComponent(id)}${tail}`), res, upstream.apiKey);
    } catch (error) {
      answerError(error, req, res, next);
    }
  };

  /** POST /v1/batches: admitted only when every budget can take the file's worst case now. */
  const createBatch: RequestHandler = async (req, res, next) => {
    try {
      const ctx = req.tollgate;
      const body = (req.body ?? {}) as Record<string, unknown>;
      const { input_file_id: fileId, endpoint, completion_window: window } = body;
      if (typeof fileId !== 'string')
        throw new ApiError('invalid_request', 'input_file_id must be a string.', { param: 'input_file_id' });
      if (typeof endpoint !== 'string' || !Object.hasOwn(BATCH_ENDPOINTS, endpoint))
        throw new ApiError('invalid_request', `endpoint must be one of ${Object.keys(BATCH_ENDPOINTS).join(', ')}.`, {
          param: 'endpoint',
        });
      if (window !== '24h')
        throw new ApiError('invalid_request', 'completion_window must be "24h".', { param: 'completion_window' });
      const owner = ownerOf(ctx.identity);
      const file = await book.file(owner, fileId);
      if (!file) throw notFound('file', fileId);
      checkModels(parts.modelAllowed, file.models, () => {
        admitBatch(req, res, owner, file.fileId, file.models, file.worstCaseNanoUsd).catch((error: unknown) =>
          answerError(error, req, res, next),
        );
      })(req, res, next);
    } catch (error) {
      answerError(error, req, res, next);
    }
  };

  async function admitBatch(
    req: Request,
    res: Response,
    owner: string,
    fileId: string,
    models: string[],
    worstCase: number,
  ): Promise<void> {
    const identity = req.tollgate.identity!;
    const spend = await budget.spendWhole(identity, models, `batch:${randomUUID()}`, worstCase).catch(() => {
      // The ledger did not answer: fail closed, nothing sent upstream.
      throw new ApiError('service_unavailable', 'The budget ledger is unavailable; try again shortly.', {
        headers: { 'retry-after': 5 },
      });
    });
    if (!spend.ok) {
      renderApiError(spend.error, req, res);
      return;
    }
    // No answer (failed or timed out): the job may exist upstream all the same, so its worst case stays spent.
    const answer = await callUpstream(upstream, '/batches', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(req.body),
    });
    const batch = answer.ok ? await jsonOf(answer) : undefined;
    if (!batch || typeof batch.id !== 'string') {
      // Refused upstream: nothing will run, nothing is owed.
      await budget.refundSpend(spend.scopes, worstCase);
      await passOn(answer, res, upstream.apiKey);
      return;
    }
    await book.putJob({
      ...{ owner, batchId: batch.id, fileId, models, worstCaseNanoUsd: worstCase, scopes: spend.scopes },
      tenantId: identity.tenantId ?? null,
      keyId: identity.keyId || null,
      userId: identity.userId ?? null,
      feature: identity.feature ?? null,
    });
    res.setHeader('x-tollgate-reserved-usd', exactUsd(worstCase));
    await passOn(answer, res, upstream.apiKey);
  }

  /** GET /v1/batches/<id> and POST /v1/batches/<id>/cancel: passed on; a job seen finished is settled first. */
  const batchCall: RequestHandler = async (req, res, next) => {
    try {
      const id = String(req.params.id);
      const job = await book.job(ownerOf(req.tollgate.identity), id);
      if (!job) {
        renderApiError(notFound('batch', id), req, res);
        return;
      }
      const cancel = req.method === 'POST';
      const answer = await callUpstream(
        upstream,
        `/batches/${encodeURIComponent(id)}${cancel ? '/cancel' : ''}`,
        cancel ? { method: 'POST' } : {},
      );
      const batch = answer.ok ? await jsonOf(answer) : undefined;
      if (batch && typeof batch.status === 'string' && FINISHED.has(batch.status)) await settleJob(job, batch);
      await passOn(answer, res, upstream.apiKey);
    } catch (error) {
      answerError(error, req, res, next);
    }
  };

  async function sweep(limit: number): Promise<void> {
    for (const job of await book.openJobs(limit)) {
      const answer = await callUpstream(upstream, `/batches/${encodeURIComponent(job.batchId)}`);
      const batch = answer.ok ? await jsonOf(answer) : undefined;
      if (batch && typeof batch.status === 'string' && FINISHED.has(batch.status)) await settleJob(job, batch);
    }
  }

  return { uploadFile, readFile, createBatch, batchCall, settleJob, sweep };
}
