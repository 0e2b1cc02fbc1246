// stripeMeterSink against a local stand-in for Stripe's meter events endpoint, through the official `stripe` package.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import type { UsageRecord } from '@tollgate/core';
import { openUsageSpool } from '@tollgate/metering';
import { stripeMeterSink } from '@tollgate/metering/stripe';
import { startFakeStripe } from '../../../test/helpers/fake-stripe.js';
import { sampleRecord } from './sample-record.js';
import type { FakeStripe } from '../../../test/helpers/fake-stripe.js';
import { seeded } from './seeded.js';

const root = mkdtempSync(path.join(tmpdir(), 'tollgate-stripe-'));
let stripe: FakeStripe;
let dirs = 0;
const newDir = () => path.join(root, `d${dirs++}`);

beforeAll(async () => {
  stripe = await startFakeStripe(['cus_acme', 'cus_globex']);
});
afterEach(() => {
  stripe.events.length = 0;
  stripe.posts.clear();
  stripe.failWith = () => undefined;
  stripe.loseAnswer = () => false;
});
afterAll(async () => {
  await stripe.close();
  rmSync(root, { recursive: true, force: true });
});

let ids = 0;
const record = (tenantId: string | null, costNanoUsd: number): UsageRecord =>
  sampleRecord({ id: `rec-${ids++}`, timestamp: '2026-11-24T06:00:00.000Z', tenantId, costNanoUsd });

const sinkOptions = (directory: string) => ({
  apiKey: 'sk_test_tollgate',
  eventName: 'ai_usage_usd',
  customers: { acme: 'cus_acme', globex: 'cus_globex', ghost: 'cus_unknown' },
  directory,
  baseUrl: stripe.baseUrl,
  retryDelayMs: 1,
  maxRetryDelayMs: 2,
  flushIntervalMs: 0,
  onError: () => undefined,
});

describe('stripeMeterSink', () => {
  it('sends an event per priced record of a mapped tenant: its customer, its id, whole micro-USD carried on', async () => {
    const sink = stripeMeterSink(sinkOptions(newDir()));
    const billed = [1_234_499, 1_234_500, 7_000, 999_999_999, 42_000].map((cost) => record('acme', cost));
    for (const each of billed) sink.write(each);
    sink.write(record('initech', 5_000)); // not mapped to a customer
    sink.write(record('acme', 0)); // a refusal: nothing to bill
    sink.write(record(null, 5_000));
    expect(await sink.flushStored!()).toBe(true);
    expect(
      stripe.events.map(({ identifier, customer, value, eventName, timestamp }) => [
        identifier,
        customer,
        value,
        eventName,
        timestamp,
      ]),
    ).toEqual(
      billed.map((each, index) => [
        each.id,
        'cus_acme',
        // 1,234,499 nano is 1,234 µUSD and 499 carried; with the next 1,234,500: 2,468,999, so 1,234 more.
        ['1234', '1234', '7', '1000000', '42'][index],
        'ai_usage_usd',
        Date.parse('2026-11-24T06:00:00.000Z') / 1000,
      ]),
    );
    // Together: floor(1,002,517,998 / 1000), the records' sum to the micro-USD.
    expect(stripe.events.reduce((sum, event) => sum + Number(event.value), 0)).toBe(1_002_517);
    await sink.close();
  });

  it('bills every nano-USD: 10,000 records under a micro-USD and a mix add up to the ledger per customer and month, across restarts and lost answers', async () => {
    const spoolDir = newDir();
    const stripeDir = newDir();
    const random = seeded(42);
    const records: UsageRecord[] = [];
    for (let i = 0; i < 10_200; i++) {
      const tenantId = random() < 0.5 ? 'acme' : 'globex';
      const month = random() < 0.5 ? '2026-10-31T23:59:59.000Z' : '2026-11-01T00:00:00.000Z';
      // 10,000 of 1 to 499 nano-USD (a short embedding call), 200 of up to $0.005.
      const cost = i % 51 === 50 ? 1 + Math.floor(random() * 5_000_000) : 1 + Math.floor(random() * 499);
      records.push(sampleRecord({ id: `carry-${i}`, timestamp: month, tenantId, costNanoUsd: cost }));
    }
    const open = () =>
      openUsageSpool({
        directory: spoolDir,
        sinks: [stripeMeterSink(sinkOptions(stripeDir))],
        checkpointIntervalMs: 60_000,
      });
    const first = open();
    await first.replay();
    for (const each of records.slice(0, 6_000)) first.deliver(each);
    expect(await first.flush()).toBe(true);
    // From here Stripe takes some events but their answers are lost, to the client's own retry too (a crash between
    // sending and recording), and refuses others for a while; the process stops with those unaccepted.
    const numberOf = (identifier: string) => Number(identifier.slice('carry-'.length));
    stripe.loseAnswer = (identifier, post) => numberOf(identifier) % 23 === 0 && post <= 2;
    stripe.failWith = (identifier) => (numberOf(identifier) % 29 === 0 ? 503 : undefined);
    for (const each of records.slice(6_000, 9_000)) first.deliver(each);
    expect(await first.flush()).toBe(false);
    await first.close();

    stripe.loseAnswer = () => false;
    stripe.failWith = () => undefined;
    const second = open();
    await second.replay();
    // Records the spool hands over again (here all of them) add nothing: each was counted once, when first written.
    for (const each of records.slice(0, 9_000)) second.deliver(each);
    for (const each of records.slice(9_000)) second.deliver(each);
    expect(await second.flush()).toBe(true);
    await second.close();

    const ledger = new Map<string, number>();
    const billed = new Map<string, number>();
    const add = (sums: Map<string, number>, key: string, amount: number) =>
      sums.set(key, (sums.get(key) ?? 0) + amount);
    for (const each of records) add(ledger, `cus_${each.tenantId} ${each.timestamp.slice(0, 7)}`, each.costNanoUsd);
    for (const event of stripe.events) {
      const month = new Date(event.timestamp * 1000).toISOString().slice(0, 7);
      add(billed, `${event.customer} ${month}`, Number(event.value));
    }
    expect(ledger.size).toBe(4);
    // Per customer and month: floor(the ledger's nano-USD / 1000), exactly (before: 200 events, the rest never billed).
    expect(Object.fromEntries(billed)).toEqual(
      Object.fromEntries([...ledger].map(([key, nano]) => [key, Math.floor(nano / 1000)])),
    );
    expect(stripe.events.length).toBeGreaterThan(1_000);
    // Events whose answers were lost were sent again by the next process, and accepted once.
    const resent = [...stripe.posts].filter(([identifier, posts]) => numberOf(identifier) % 23 === 0 && posts > 2);
    expect(resent.length).toBeGreaterThan(0);
    expect(new Set(stripe.events.map((event) => event.identifier)).size).toBe(stripe.events.length);
  }, 60_000);

  it('counts a record once when the process died before anything of it was stored, and the spool hands it over again', async () => {
    const directory = newDir();
    const records = [400, 400, 400, 400].map((cost) => record('acme', cost));
    const died = stripeMeterSink(sinkOptions(directory));
    for (const each of records) died.write(each);
    // Never flushed: nothing is on disk or at Stripe. The next process is handed the same records.
    const next = stripeMeterSink(sinkOptions(directory));
    expect(await next.replay!(records, undefined)).toBe(true);
    expect(stripe.events.map((event) => event.value)).toEqual(['1']);
    expect(await next.replay!(records, undefined)).toBe(true);
    expect(stripe.events.map((event) => event.value)).toEqual(['1']);
    await next.close();
  });

  it('keeps an event Stripe did not accept and sends it again until it does, counted once', async () => {
    const sink = stripeMeterSink(sinkOptions(newDir()));
    const first = record('globex', 5_000_000);
    const second = record('globex', 6_000_000);
    // The first event fails four times (the client's own quick retry included), then goes through.
    stripe.failWith = (identifier, post) => (identifier === first.id && post <= 4 ? 503 : undefined);
    sink.write(first);
    sink.write(second);
    expect(await sink.flushStored!()).toBe(false);
    expect(sink.pending).toBe(1);
    let stored = false;
    for (let round = 0; round < 50 && !stored; round++) {
      await new Promise((resolve) => setTimeout(resolve, 3));
      stored = await sink.flushStored!();
    }
    expect(stored).toBe(true);
    expect(stripe.posts.get(first.id)).toBe(5);
    expect(stripe.events.map((event) => event.identifier).sort()).toEqual([first.id, second.id].sort());
    await sink.close();
  });

  it('drops and reports an event Stripe refuses for good, and does not hold the others back', async () => {
    const errors: unknown[] = [];
    const sink = stripeMeterSink({ ...sinkOptions(newDir()), onError: (error) => errors.push(error) });
    sink.write(record('ghost', 3_000_000));
    sink.write(record('acme', 3_000_000));
    expect(await sink.flushStored!()).toBe(true);
    expect(sink.rejected).toBe(1);
    expect(String(errors[0])).toMatch(/refused the meter event .* for good.*No such customer/);
    expect(stripe.events.map((event) => event.customer)).toEqual(['cus_acme']);
    await sink.close();
  });

  it('does not send again what Stripe accepted, after a restart replays the same records', async () => {
    const directory = newDir();
    const records = [record('acme', 1_000_000), record('acme', 2_000_000), record('globex', 3_000_000)];
    const before = stripeMeterSink(sinkOptions(directory));
    before.write(records[0]!);
    before.write(records[1]!);
    expect(await before.flushStored!()).toBe(true);
    await before.close();
    // As after a crash: the spool hands every record not checkpointed to a new sink on the same directory.
    const after = stripeMeterSink(sinkOptions(directory));
    expect(await after.replay!(records, undefined)).toBe(true);
    expect([...stripe.posts.values()]).toEqual([1, 1, 1]);
    expect(stripe.events.map((event) => event.identifier)).toEqual(records.map((each) => each.id));
    await after.close();
  });

  it('treats a duplicate identifier (sent in the instant before a crash) as accepted', async () => {
    const directory = newDir();
    const sink = stripeMeterSink(sinkOptions(directory));
    const once = record('acme', 1_000_000);
    sink.write(once);
    await sink.flushStored!();
    // A sink that never journaled it (a crash between Stripe's answer and the journal) sends it again.
    const fresh = stripeMeterSink(sinkOptions(newDir()));
    fresh.write(once);
    expect(await fresh.flushStored!()).toBe(true);
    expect(fresh.rejected).toBe(0);
    expect(stripe.events).toHaveLength(1);
    await sink.close();
    await fresh.close();
  });

  it('under the usage spool: what was not accepted at a stop is sent by the next process', async () => {
    const spoolDir = newDir();
    const stripeDir = newDir();
    stripe.failWith = () => 503;
    const first = openUsageSpool({
      directory: spoolDir,
      sinks: [stripeMeterSink(sinkOptions(stripeDir))],
      checkpointIntervalMs: 60_000,
    });
    await first.replay();
    const records = [record('acme', 1_000_000), record('acme', 2_000_000)];
    for (const each of records) first.deliver(each);
    expect(await first.flush()).toBe(false);
    await first.close();
    expect(stripe.events).toHaveLength(0);
    stripe.failWith = () => undefined;
    const second = openUsageSpool({
      directory: spoolDir,
      sinks: [stripeMeterSink(sinkOptions(stripeDir))],
      checkpointIntervalMs: 60_000,
    });
    const replay = await second.replay();
    expect(replay.records).toBe(2);
    expect(stripe.events.map((event) => event.identifier)).toEqual(records.map((each) => each.id));
    await second.close();
  });

  it('refuses options it does not know or cannot use', () => {
    expect(() => stripeMeterSink({ ...sinkOptions(newDir()), eventName: '' })).toThrow(/eventName/);
    expect(() => stripeMeterSink({ ...sinkOptions(newDir()), apiKey: undefined })).toThrow(/apiKey/);
    expect(() => stripeMeterSink({ ...sinkOptions(newDir()), customers: { acme: '' } })).toThrow(/customers\.acme/);
    expect(() => stripeMeterSink({ ...sinkOptions(newDir()), batch: 5 } as never)).toThrow(/batch/);
  });
});
