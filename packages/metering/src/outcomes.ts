// Outcomes (a request or conversation that resolved a ticket, converted a sale) and what they cost: recorded and read in the SQL ledger.
import { randomUUID } from 'node:crypto';
import { TollgateError } from '@tollgate/core';
import { ledgerTableName, migrateUsageLedger, outcomeTableName } from './postgres-ledger.js';
import type { LedgerLocation, Queryable } from './postgres-ledger.js';

/** What an outcome is reported against: one request (its `x-request-id`) or a conversation (its `x-conversation-id`). */
export type OutcomeSubject = 'request' | 'conversation';

export interface OutcomeReport {
  /** The tenant reporting it: only this tenant's requests are matched. */
  tenantId: string;
  /** The request id the proxy returned (`x-request-id`). One of this or `conversationId`. */
  requestId?: string;
  /** The conversation id the caller sent on its requests (`x-conversation-id`). One of this or `requestId`. */
  conversationId?: string;
  /** What happened: `resolved`, `converted`, ... (lower case letters, digits, `_`, `-`, `.`; at most 64). */
  kind: string;
  /** What the outcome was worth, in nano-USD (revenue, a saved cost). @default none */
  valueNanoUsd?: number;
  /** When it happened. @default now */
  at?: Date;
}

export interface RecordedOutcome {
  id: string;
  tenantId: string;
  subject: OutcomeSubject;
  subjectId: string;
  kind: string;
  valueNanoUsd: number | null;
  at: string;
  /** False when this tenant had reported this kind for this subject already: the first report stands. */
  created: boolean;
  /** The requests the outcome covers now, and what they cost. */
  requests: number;
  costNanoUsd: number;
}

/** Same shape as a request id (core's `x-request-id` check). */
const SUBJECT_ID = /^[\w.:@-]{1,128}$/;
const KIND = /^[a-z][a-z0-9_.-]{0,63}$/;
/** Money stays exact in a double up to about $9M (docs: nano-USD in a number). */
const MAX_VALUE_NANO_USD = 9_000_000 * 1_000_000_000;

function invalid(message: string): TollgateError {
  return new TollgateError('ERR_TG_METERING_INVALID_OUTCOME', message);
}

/** Checks a report; throws `ERR_TG_METERING_INVALID_OUTCOME` naming the field at fault. */
function checkReport(report: OutcomeReport): { subject: OutcomeSubject; subjectId: string } {
  if (typeof report?.tenantId !== 'string' || report.tenantId.length === 0)
    throw invalid('an outcome needs the tenantId of its reporter');
  const hasRequest = report.requestId !== undefined;
  if (hasRequest === (report.conversationId !== undefined))
    throw invalid('an outcome names one requestId or one conversationId');
  const subjectId = hasRequest ? report.requestId : report.conversationId;
  if (typeof subjectId !== 'string' || !SUBJECT_ID.test(subjectId)) {
    throw invalid(`${hasRequest ? 'requestId' : 'conversationId'} must be 1 to 128 letters, digits or . : @ - _`);
  }
  if (typeof report.kind !== 'string' || !KIND.test(report.kind))
    throw invalid('kind must be a lower-case word such as "resolved" (a-z, 0-9, _ . -; at most 64)');
  const value = report.valueNanoUsd;
  if (value !== undefined && (!Number.isSafeInteger(value) || value < 0 || value > MAX_VALUE_NANO_USD)) {
    throw invalid('valueNanoUsd must be an integer from 0 to 9e15 (nano-USD: $9M)');
  }
  if (report.at !== undefined && !(report.at instanceof Date && Number.isFinite(report.at.getTime())))
    throw invalid('at must be a valid Date');
  return { subject: hasRequest ? 'request' : 'conversation', subjectId };
}

const isMissingTable = (error: unknown) => (error as { code?: unknown }).code === '42P01';

/**
 * Records an outcome against the reporting tenant's request or conversation, in the ledger's
 * outcomes table. Resolves with it, or with undefined when the tenant has no recorded request of
 * that id (another tenant's requests are never matched). Reporting the same kind for the same
 * subject again stores nothing more (`created: false`): the first report, and its value, stand.
 * A record still queued in a sink is not found: flush the sink first (the example proxy does on a miss).
 */
export async function recordOutcome(
  db: Queryable,
  report: OutcomeReport,
  location: LedgerLocation = {},
): Promise<RecordedOutcome | undefined> {
  const { subject, subjectId } = checkReport(report);
  const usage = ledgerTableName(location);
  const column = subject === 'request' ? 'request_id' : 'conversation_id';
  let covered: { requests: string; cost: string } | undefined;
  try {
    const result = await db.query<{ requests: string; cost: string }>(
      `SELECT count(*) AS requests, coalesce(sum(cost_nano_usd), 0) AS cost FROM ${usage} WHERE tenant_id = $1 AND ${column} = $2`,
      [report.tenantId, subjectId],
    );
    covered = result.rows[0];
  } catch (error) {
    // No ledger yet: nothing was recorded, so no request has that id.
    if (isMissingTable(error)) return undefined;
    throw error;
  }
  const requests = Number(covered?.requests ?? 0);
  if (requests === 0) return undefined;

  const outcomes = outcomeTableName(location);
  const values = [
    randomUUID(),
    report.tenantId,
    subject,
    subjectId,
    report.kind,
    report.valueNanoUsd ?? null,
    (report.at ?? new Date()).toISOString(),
  ];
  const insert = () =>
    db.query<{ id: string }>(
      `INSERT INTO ${outcomes} (id, tenant_id, subject, subject_id, kind, value_nano_usd, ts) VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (tenant_id, subject, subject_id, kind) DO NOTHING RETURNING id`,
      values,
    );
  let inserted;
  try {
    inserted = await insert();
  } catch (error) {
    // A ledger made before outcomes existed, whose sink has not migrated it in this process yet.
    if (!isMissingTable(error)) throw error;
    await migrateUsageLedger(db, location);
    inserted = await insert();
  }
  const stored = await db.query<{ id: string; value_nano_usd: string | null; ts: Date | string }>(
    `SELECT id, value_nano_usd, ts FROM ${outcomes} WHERE tenant_id = $1 AND subject = $2 AND subject_id = $3 AND kind = $4`,
    [report.tenantId, subject, subjectId, report.kind],
  );
  const row = stored.rows[0]!;
  return {
    id: row.id,
    tenantId: report.tenantId,
    subject,
    subjectId,
    kind: report.kind,
    valueNanoUsd: row.value_nano_usd === null ? null : Number(row.value_nano_usd),
    at: new Date(row.ts).toISOString(),
    created: inserted.rows.length > 0,
    requests,
    costNanoUsd: Number(covered?.cost ?? 0),
  };
}

export type OutcomeGrouping = 'tenant' | 'feature';
export const OUTCOME_GROUPINGS: readonly OutcomeGrouping[] = ['tenant', 'feature'];

interface OutcomeCostOptions extends LedgerLocation {
  by: OutcomeGrouping;
  /** Outcomes reported from (inclusive); their requests may be older. */
  since: Date;
  /** Outcomes reported until (exclusive). @default now */
  until?: Date;
  /** Only this tenant's outcomes. */
  tenantId?: string;
  /** Only outcomes of this kind. */
  kind?: string;
}

export interface OutcomeCost {
  /** The tenant, or the feature of the requests behind the outcomes (null: requests with no feature). */
  group: string | null;
  kind: string;
  /** Outcomes of this kind in the group. */
  outcomes: number;
  /** The requests that led to them. */
  requests: number;
  /** What those requests cost. */
  costNanoUsd: number;
  /** `costNanoUsd / outcomes`, rounded up: the cost of one outcome. */
  costPerOutcomeNanoUsd: number;
  /** Outcomes reported with a value. */
  valuedOutcomes: number;
  /** Their values summed; null when none had one. */
  valueNanoUsd: number | null;
  /** Value over the cost of the valued outcomes' requests; null without values or cost. */
  valuePerCost: number | null;
}

const OUTCOME_GROUPS: Record<OutcomeGrouping, string> = { tenant: 'o.tenant_id', feature: 'u.feature' };

/**
 * Cost per outcome, per tenant or feature and outcome kind: the cost of the requests (or
 * conversations) that led to outcomes, over their number. An outcome whose requests span several
 * features counts once in each, with the cost of that feature's requests (and its whole value).
 */
export async function costPerOutcome(db: Queryable, options: OutcomeCostOptions): Promise<OutcomeCost[]> {
  const group = OUTCOME_GROUPS[options.by];
  if (!group)
    throw new TollgateError(
      'ERR_TG_METERING_INVALID_GROUPING',
      `outcomes can be grouped by ${OUTCOME_GROUPINGS.join(', ')}; got ${JSON.stringify(options.by)}`,
    );
  const values: unknown[] = [options.since.toISOString(), (options.until ?? new Date()).toISOString()];
  let filter = '';
  if (options.tenantId !== undefined) {
    values.push(options.tenantId);
    filter += ` AND o.tenant_id = $${values.length}`;
  }
  if (options.kind !== undefined) {
    values.push(options.kind);
    filter += ` AND o.kind = $${values.length}`;
  }
  let result;
  try {
    result = await db.query<Record<string, string | null>>(
      `WITH linked AS (
         SELECT o.id, o.kind, o.value_nano_usd, ${group} AS grp, count(*) AS requests, coalesce(sum(u.cost_nano_usd), 0) AS cost
           FROM ${outcomeTableName(options)} o
           JOIN ${ledgerTableName(options)} u ON u.tenant_id = o.tenant_id
            AND ((o.subject = 'request' AND u.request_id = o.subject_id) OR (o.subject = 'conversation' AND u.conversation_id = o.subject_id))
          WHERE o.ts >= $1 AND o.ts < $2${filter}
          GROUP BY o.id, o.kind, o.value_nano_usd, ${group}
       )
       SELECT grp, kind, count(*) AS outcomes, sum(requests) AS requests, sum(cost) AS cost,
              count(value_nano_usd) AS valued, sum(value_nano_usd) AS value,
              coalesce(sum(cost) FILTER (WHERE value_nano_usd IS NOT NULL), 0) AS valued_cost
         FROM linked
        GROUP BY grp, kind
        ORDER BY grp NULLS LAST, kind`,
      values,
    );
  } catch (error) {
    // A ledger not created yet holds no outcomes.
    if (isMissingTable(error)) return [];
    throw error;
  }
  // bigint sums arrive as strings; they stay below 2^53.
  return result.rows.map((row) => {
    const outcomes = Number(row.outcomes);
    const cost = Number(row.cost);
    const valuedCost = Number(row.valued_cost);
    const value = row.value === null ? null : Number(row.value);
    return {
      group: row.grp ?? null,
      kind: row.kind!,
      outcomes,
      requests: Number(row.requests),
      costNanoUsd: cost,
      costPerOutcomeNanoUsd: Math.ceil(cost / outcomes),
      valuedOutcomes: Number(row.valued),
      valueNanoUsd: value,
      valuePerCost: value === null || valuedCost === 0 ? null : value / valuedCost,
    };
  });
}
