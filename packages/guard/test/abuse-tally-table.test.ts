// The window's sums in blocks of typed arrays: counts added per row, marks counted once per row, rows merged across
// tables, the least recently seen row given to a new subject, and blocks handed on zeroed.
import { describe, expect, it } from '@jest/globals';
import { AbuseTallyTable, emptyTally, TALLY_COUNTS, type AbuseSubject } from '../src/abuse-features.js';

const REQUESTS = TALLY_COUNTS.indexOf('requests');
const marks = (kind: string, count: number, from = 0) =>
  Array.from({ length: count }, (_, i) => `${kind}\u001fvalue-${from + i}`);

describe('AbuseTallyTable', () => {
  it('counts each mark once per row, by kind, and ignores kinds the model does not read', () => {
    const table = new AbuseTallyTable();
    const row = table.rowOf('key:k1');
    for (const mark of [...marks('peer', 3), ...marks('peer', 3), 'agent\u001fcurl', 'route\u001f/v1/chat'])
      table.addMark(row, mark);
    table.addMark(row, 'toString\u001fx');
    table.addMark(row, 'constructor\u001fx');
    table.addMark(row, 'no separator');
    expect(table.get('key:k1')!.marks).toEqual({ peer: 3, agent: 1, model: 0, route: 1 });
    // The same value on another row is that row's own.
    table.addMark(table.rowOf('key:k2'), 'peer\u001fvalue-0');
    expect(table.get('key:k2')!.marks.peer).toBe(1);
  });

  it('keeps counting exactly past the chain limit (a Set takes the row over), and merges such rows', () => {
    const table = new AbuseTallyTable();
    const row = table.rowOf('address:10.0.0.1');
    for (const mark of marks('peer', 300)) table.addMark(row, mark);
    for (const mark of marks('peer', 300)) table.addMark(row, mark);
    for (const mark of marks('model', 20)) table.addMark(row, mark);
    expect(table.get('address:10.0.0.1')!.marks).toEqual({ peer: 300, agent: 0, model: 20, route: 0 });

    const other = new AbuseTallyTable();
    const at = other.rowOf('address:10.0.0.1');
    for (const mark of marks('peer', 10, 295)) other.addMark(at, mark);
    other.addCount(at, REQUESTS, 4);
    table.addRow(other, at);
    table.addRow(other, at);
    expect(table.get('address:10.0.0.1')!.marks.peer).toBe(305);
    expect(table.get('address:10.0.0.1')!.counts.requests).toBe(8);
  });

  it('holds rows across many blocks, each its own', () => {
    const table = new AbuseTallyTable();
    const subjects = Array.from({ length: 20_000 }, (_, i) => `address:10.0.${i >> 8}.${i & 255}` as AbuseSubject);
    for (const [i, subject] of subjects.entries()) {
      const row = table.rowOf(subject);
      table.addCount(row, REQUESTS, i);
      table.addMark(row, `peer\u001f${i % 7}`);
      table.addMark(row, `peer\u001f${(i + 1) % 7}`);
    }
    expect(table.size).toBe(20_000);
    for (const i of [0, 4095, 4096, 8191, 12_345, 19_999]) {
      expect(table.get(subjects[i]!)!.counts.requests).toBe(i);
      expect(table.get(subjects[i]!)!.marks.peer).toBe(2);
    }
  });

  it("gives the least recently seen subject's row to a new one past the bound, zeroed", () => {
    expect(() => new AbuseTallyTable().seen('key:a', 3)).toThrow(/ordered/);
    const table = new AbuseTallyTable(true);
    for (const subject of ['key:a', 'key:b', 'key:c'] as const) {
      const row = table.seen(subject, 3);
      table.addCount(row, REQUESTS, 5);
      table.addMark(row, 'peer\u001fx');
    }
    table.seen('key:a', 3);
    const row = table.seen('key:d', 3);
    expect(table.has('key:b')).toBe(false);
    expect(table.size).toBe(3);
    expect(table.get('key:d')).toEqual({
      counts: expect.objectContaining({ requests: 0 }),
      marks: { peer: 0, agent: 0, model: 0, route: 0 },
    });
    table.addMark(row, 'peer\u001fx');
    expect(table.get('key:d')!.marks.peer).toBe(1);
    expect(table.get('key:a')!.counts.requests).toBe(5);
  });

  it('hands its blocks to the next table zeroed', () => {
    const first = new AbuseTallyTable();
    for (let i = 0; i < 5_000; i++) {
      const row = first.rowOf(`key:k${i}`);
      first.addCount(row, REQUESTS, 9);
      first.addMark(row, 'agent\u001fcurl');
    }
    first.release();
    expect(first.size).toBe(0);
    const next = new AbuseTallyTable();
    for (let i = 0; i < 5_000; i++) next.rowOf(`key:k${i}`);
    expect(next.get('key:k0')).toEqual({
      counts: expect.objectContaining({ requests: 0 }),
      marks: { peer: 0, agent: 0, model: 0, route: 0 },
    });
    expect(next.get('key:k4999')!.marks.agent).toBe(0);
  });

  it('reads whole tallies as a person gives them', () => {
    const tally = emptyTally();
    tally.counts.requests = 3;
    tally.marks.add('peer\u001fa').add('peer\u001fb');
    const table = AbuseTallyTable.of([['key:k', tally]]);
    expect(table.get('key:k')).toEqual({
      counts: expect.objectContaining({ requests: 3 }),
      marks: { peer: 2, agent: 0, model: 0, route: 0 },
    });
  });
});
