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
  it('sends one event per priced record of a mapped tenant: its customer, its cost in micro-USD, its id', async () => {
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
        ['1234', '1235', '7', '1000000', '42'][index],
        'ai_usage_usd',
        Date.parse('2026-11-24T06:00:00.000Z') / 1000,
      ]),
    );
    await sink.close();
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
