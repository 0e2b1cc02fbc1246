// The provider routes' body reader answers every request as express.json with the same limit does.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import type { RequestHandler } from 'express';
import { apiErrorHandler } from '@tollgate/core';
import { JSON_BODY_TYPES, limitInBytes, providerJsonBody } from '../src/json-body.js';

const LIMIT = '1kb';

interface Answer {
  status: number;
  body: string;
}

interface Server {
  url: URL;
  /** Bodies handed on before their stream ended: read from what Node held, not streamed in. */
  readonly heldReads: number;
  close(): Promise<void>;
}

/**
 * A server answering each POST with what `parse` made of its body (or the error it rendered), after a
 * turn of the event loop as the proxy's auth takes (by then Node holds a small body whole).
 */
async function serve(parse: RequestHandler): Promise<Server> {
  const app = express();
  let heldReads = 0;
  app.post(
    '/',
    (_req, _res, next) => setImmediate(next),
    parse,
    (req, res) => {
      if (!req.readableEnded) heldReads++;
      res.json({ body: req.body as unknown });
    },
  );
  app.use(apiErrorHandler());
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: new URL(`http://127.0.0.1:${port}/`),
    get heldReads() {
      return heldReads;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** One POST of `body` with `headers`; the body sent in pieces, `gapMs` apart, when `pieces` is over 1. */
function post(url: URL, headers: Record<string, string>, body: Buffer, pieces = 1, gapMs = 5): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method: 'POST', headers: { 'content-length': String(body.length), ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString() }));
      },
    );
    req.on('error', reject);
    const size = Math.ceil(body.length / pieces);
    let sent = 0;
    const sendNext = () => {
      const piece = body.subarray(sent, sent + size);
      sent += piece.length;
      if (sent >= body.length) req.end(piece);
      else {
        req.write(piece);
        setTimeout(sendNext, gapMs);
      }
    };
    sendNext();
  });
}

const JSON_TYPE = { 'content-type': 'application/json' };
const valid = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'héllo ✓' }] });
const CASES: [string, Record<string, string>, Buffer][] = [
  ['a valid body', JSON_TYPE, Buffer.from(valid)],
  ['a valid body, charset utf-8', { 'content-type': 'application/json; charset=utf-8' }, Buffer.from(valid)],
  ['a byte order mark', JSON_TYPE, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(valid)])],
  ['leading JSON whitespace', JSON_TYPE, Buffer.from(` \t\r\n${valid}`)],
  ['leading non-JSON whitespace', JSON_TYPE, Buffer.from(`\f${valid}`)],
  ['an array', JSON_TYPE, Buffer.from('[1,2]')],
  ['a number', JSON_TYPE, Buffer.from('5')],
  ['null', JSON_TYPE, Buffer.from('null')],
  ['a quoted string', JSON_TYPE, Buffer.from('"hi"')],
  ['malformed JSON', JSON_TYPE, Buffer.from('{"model": ')],
  ['a trailing comma', JSON_TYPE, Buffer.from('{"a":1,}')],
  ['bytes that are no UTF-8', JSON_TYPE, Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d])],
  ['an empty body', JSON_TYPE, Buffer.alloc(0)],
  ['prototype keys', JSON_TYPE, Buffer.from('{"__proto__":{"polluted":"yes"},"constructor":{"prototype":{}}}')],
  ['a body at the limit', JSON_TYPE, Buffer.from(`{"a":"${'x'.repeat(limitInBytes(LIMIT) - 8)}"}`)],
  ['a body over the limit', JSON_TYPE, Buffer.from(`{"a":"${'x'.repeat(limitInBytes(LIMIT) - 7)}"}`)],
  ['another charset', { 'content-type': 'application/json; charset=latin1' }, Buffer.from(valid)],
  ['utf-16', { 'content-type': 'application/json; charset=utf-16' }, Buffer.from(valid, 'utf16le')],
  ['upper case', { 'content-type': 'Application/JSON' }, Buffer.from(valid)],
  ['a +json type', { 'content-type': 'application/vnd.api+json' }, Buffer.from(valid)],
  ['text', { 'content-type': 'text/plain' }, Buffer.from(valid)],
  ['no content type', {}, Buffer.from(valid)],
  ['gzip', { ...JSON_TYPE, 'content-encoding': 'gzip' }, gzipSync(valid)],
  ['an unknown encoding', { ...JSON_TYPE, 'content-encoding': 'pack200' }, Buffer.from(valid)],
];

describe('providerJsonBody', () => {
  let reference: Server;
  let reader: Server;
  beforeAll(async () => {
    reference = await serve(express.json({ limit: LIMIT, type: JSON_BODY_TYPES }));
    reader = await serve(providerJsonBody(LIMIT));
  });
  afterAll(async () => {
    await reference.close();
    await reader.close();
  });

  it.each(CASES)('answers %s as express.json does', async (_name, headers, body) => {
    const expected = await post(reference.url, headers, body);
    expect(await post(reader.url, headers, body)).toEqual(expected);
  });

  it('reads a plain JSON body from what Node holds, without streaming it', async () => {
    const [readerBefore, referenceBefore] = [reader.heldReads, reference.heldReads];
    expect((await post(reader.url, JSON_TYPE, Buffer.from(valid))).status).toBe(200);
    expect((await post(reference.url, JSON_TYPE, Buffer.from(valid))).status).toBe(200);
    expect(reader.heldReads).toBe(readerBefore + 1);
    expect(reference.heldReads).toBe(referenceBefore);
  });

  it('answers a body sent in pieces as express.json does', async () => {
    const body = Buffer.from(valid);
    const expected = await post(reference.url, JSON_TYPE, body, 3);
    expect(expected.status).toBe(200);
    expect(await post(reader.url, JSON_TYPE, body, 3)).toEqual(expected);
  });

  it('reads limits as express.json does', () => {
    expect([1024, '1kb', '1mb', '1.5KB', '100', '100b', '2 mb'].map(limitInBytes)).toEqual([
      1024,
      1024,
      1024 ** 2,
      1536,
      100,
      100,
      2 * 1024 ** 2,
    ]);
  });
});
