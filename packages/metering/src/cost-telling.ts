// How an answer tells what its call cost: in its headers (this call's cost, and what the tightest budget has left after
// it) and, in a whole JSON answer, as `cost_usd` in its usage object.
import type { ServerResponse } from 'node:http';
import type { TollgateContext } from '@tollgate/core';
import { exactUsd } from '@tollgate/core/costs';
import { budgetRemainingAfter } from '@tollgate/core/provider-call';
import { memberValueRange } from './answer-scan.js';

/** The headers a JSON answer tells its cost in: this call's, and what the tightest budget has left after it. */
const COST_HEADER = 'x-tollgate-cost-usd';
const BUDGET_REMAINING_HEADER = 'x-tollgate-budget-remaining-usd';

/** `bytes` with `"cost_usd": cost` as the last member of the object that spans `[open, close]` (its braces). */
function withCostMember(bytes: Buffer, open: number, close: number, cost: string): Buffer {
  let empty = true;
  for (let i = open + 1; i < close; i++) {
    const code = bytes[i]!;
    if (code !== 0x20 && code !== 0x0a && code !== 0x0d && code !== 0x09) {
      empty = false;
      break;
    }
  }
  // Last, so that a `cost_usd` the upstream sent is overridden for every reader (JSON.parse keeps the last).
  const member = Buffer.from(`${empty ? '' : ','}"cost_usd":${cost}`);
  return Buffer.concat([bytes.subarray(0, close), member, bytes.subarray(close)]);
}

/** Sets the headers that tell `cost`; returns it in USD as they carry it. */
export function tellCostHeaders(res: ServerResponse, ctx: TollgateContext, cost: number): string {
  const usd = exactUsd(cost);
  res.setHeader(COST_HEADER, usd);
  const remaining = budgetRemainingAfter(ctx, cost);
  if (remaining !== undefined) res.setHeader(BUDGET_REMAINING_HEADER, exactUsd(remaining));
  return usd;
}

/**
 * A whole JSON answer's `body` as it goes out telling `cost`: in its headers, and in its usage object (at the adapter's
 * `usageField`) where it has one. When its head went out already, nothing is told rather than half of it.
 */
export function jsonTellingCost(
  body: Buffer,
  cost: number,
  res: ServerResponse,
  ctx: TollgateContext,
  usageField: string | undefined,
): Buffer {
  // The route wrote its head itself (`writeHead`): its length, if it declared one, is out of reach; nothing is told.
  if (res.headersSent) return body;
  const usd = tellCostHeaders(res, ctx, cost);
  const range = usageField === undefined ? undefined : memberValueRange(body, usageField);
  if (range === undefined) return body;
  const told = withCostMember(body, range[0], range[1], usd);
  if (res.getHeader('content-length') !== undefined) res.setHeader('content-length', told.length);
  // A tag of the bytes the route wrote: these are others.
  res.removeHeader('etag');
  return told;
}
