// Reading the audit trail: a query's filters from a URL, and the entries as JSON or CSV.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError, renderApiError } from '../api-error.js';
import { csvText } from '../csv.js';
import type { AuditEntry, AuditQuery } from './entry.js';
import type { AuditTrail } from './audit-trail.js';

/** @default entries per page */
const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;
/** The CSV's columns, in order: the contract's fields first. */
export const AUDIT_CSV_COLUMNS = [
  'at',
  'actor',
  'role',
  'via',
  'address',
  'action',
  'target',
  'outcome',
  'status',
  'method',
  'path',
  'before',
  'after',
  'id',
] as const;

function oneText(query: Record<string, unknown>, name: string, max = 200): string | undefined {
  const value = query[name];
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string' || value.length > max)
    throw new ApiError('invalid_request', `${name} must be one value of at most ${max} characters.`, { param: name });
  return value;
}

function oneTime(query: Record<string, unknown>, name: string): string | undefined {
  const value = oneText(query, name, 40);
  if (value === undefined) return undefined;
  const time = Date.parse(value);
  if (Number.isNaN(time))
    throw new ApiError('invalid_request', `${name} must be an ISO 8601 time (2026-01-31T12:00:00Z).`, { param: name });
  return new Date(time).toISOString();
}

/** `?since=&until=&actor=&action=&target=&cursor=&limit=` as a query; a bad value is a 400 naming it. */
export function readAuditQuery(query: Record<string, unknown>): AuditQuery {
  const rawLimit = oneText(query, 'limit', 6);
  const limit = rawLimit === undefined ? DEFAULT_LIMIT : Number(rawLimit);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT)
    throw new ApiError('invalid_request', `limit must be a whole number from 1 to ${MAX_LIMIT}.`, { param: 'limit' });
  const cursor = oneText(query, 'cursor', 20);
  if (cursor !== undefined && !/^\d+$/.test(cursor))
    throw new ApiError('invalid_request', 'cursor must be a nextCursor of a previous page.', { param: 'cursor' });
  const filters: AuditQuery = { limit };
  const since = oneTime(query, 'since');
  const until = oneTime(query, 'until');
  const actor = oneText(query, 'actor');
  const action = oneText(query, 'action');
  const target = oneText(query, 'target', 500);
  if (since !== undefined) filters.since = since;
  if (until !== undefined) filters.until = until;
  if (actor !== undefined) filters.actor = actor;
  if (action !== undefined) filters.action = action;
  if (target !== undefined) filters.target = target;
  if (cursor !== undefined) filters.cursor = cursor;
  return filters;
}

/** Entries as CSV (a header, then one line each; before and after as JSON text). */
export function auditCsv(entries: readonly AuditEntry[]): string {
  const cell = (entry: AuditEntry, column: (typeof AUDIT_CSV_COLUMNS)[number]) => {
    const value = entry[column];
    if (column === 'before' || column === 'after') return value === null ? '' : JSON.stringify(value);
    return value === null ? '' : String(value);
  };
  return csvText([
    [...AUDIT_CSV_COLUMNS],
    ...entries.map((entry) => AUDIT_CSV_COLUMNS.map((column) => cell(entry, column))),
  ]);
}

type QueryRequest = IncomingMessage & { query?: Record<string, unknown> };

/**
 * `GET` the trail: `{ entries, nextCursor }`, or with `?format=csv` a CSV file of the page. Mount behind the admin
 * authentication (`/admin/audit`).
 */
export function auditListing(trail: Pick<AuditTrail, 'list'>) {
  return async function listAuditEntries(req: QueryRequest, res: ServerResponse, next: (error?: unknown) => void) {
    try {
      const raw = req.query ?? Object.fromEntries(new URL(req.url ?? '/', 'http://x').searchParams);
      const format = raw.format ?? 'json';
      if (format !== 'json' && format !== 'csv')
        throw new ApiError('invalid_request', 'format must be json or csv.', { param: 'format' });
      const page = await trail.list(readAuditQuery(raw));
      res.setHeader('cache-control', 'no-store');
      if (page.nextCursor !== null) res.setHeader('x-next-cursor', page.nextCursor);
      if (format === 'csv') {
        res.setHeader('content-type', 'text/csv; charset=utf-8');
        res.setHeader('content-disposition', 'attachment; filename="tollgate-audit.csv"');
        res.end(auditCsv(page.entries));
        return;
      }
      res.setHeader('content-type', 'application/json; charset=utf-8');
      res.end(JSON.stringify(page));
    } catch (error) {
      if (error instanceof ApiError) renderApiError(error, req as never, res as never);
      else next(error);
    }
  };
}
