// packages/metering/examples/outcomes.ts: what a conversation achieved, reported after the fact, and the cost per resolved ticket.
import { randomUUID } from 'node:crypto';
import { PGlite } from '@electric-sql/pglite';
import type { UsageRecord } from '@tollgate/core';
import { costPerOutcome, recordOutcome } from '@tollgate/metering';
import { postgresSink } from '@tollgate/metering/postgres';

const ledger = new PGlite(); // in memory; a pg Pool takes the same calls
const usage = postgresSink({ db: ledger });

// Three requests of the support bot as meter() records them: two in ticket 4711 (the x-conversation-id header), one in 4712.
const request = (conversationId: string, costNanoUsd: number): UsageRecord => ({
  id: randomUUID(),
  requestId: randomUUID(),
  timestamp: new Date().toISOString(),
  keyId: 'k1',
  tenantId: 'acme',
  userId: null,
  feature: 'support-bot',
  conversationId,
  route: '/v1/chat/completions',
  provider: 'openai',
  model: 'gpt-4o',
  requestedModel: 'gpt-4o',
  inputTokens: 1000,
  cachedInputTokens: 0,
  cacheWriteTokens: 0,
  outputTokens: 200,
  reasoningTokens: 0,
  costNanoUsd,
  estimatedCostNanoUsd: costNanoUsd,
  status: 200,
  stream: false,
  aborted: false,
  latencyMs: 800,
  usageSource: 'provider',
});
for (const record of [
  request('ticket-4711', 4_000_000),
  request('ticket-4711', 6_000_000),
  request('ticket-4712', 5_000_000),
])
  usage.write(record);
await usage.flush();

// The request by the x-request-id the client got back, or the conversation by the id it sent on its requests.
const outcome = await recordOutcome(ledger, {
  tenantId: 'acme',
  conversationId: 'ticket-4711',
  kind: 'resolved',
  valueNanoUsd: 12_500_000_000,
});
console.log(
  `recorded: ${outcome?.kind} ${outcome?.subject} ${outcome?.subjectId}, ${outcome?.requests} requests, ${outcome?.costNanoUsd} nano-USD`,
);
// undefined: acme has no recorded request with that id (another tenant's never match)
console.log(
  `unknown ticket: ${await recordOutcome(ledger, { tenantId: 'acme', conversationId: 'ticket-9999', kind: 'resolved' })}`,
);

const rows = await costPerOutcome(ledger, { by: 'feature', since: new Date(Date.now() - 7 * 86_400_000) });
for (const row of rows) {
  console.log(
    `${row.group} ${row.kind}: ${row.outcomes} outcome, ${row.requests} requests, ${row.costPerOutcomeNanoUsd} nano-USD each, value/cost ${row.valuePerCost}`,
  );
}
await usage.close();
await ledger.close();
