// The response tap: one per response, readers see what the route wrote, one filter decides what goes out, no prototype patched.
import { IncomingMessage, ServerResponse } from 'node:http';
import { describe, expect, it } from '@jest/globals';
import express from 'express';
import express4 from 'express4';
import request from 'supertest';
import { tapResponse, TollgateError } from '@tollgate/core';
import type { ResponseFilter, ResponseReader } from '@tollgate/core/provider-call';
import type { ResponseTap } from '../src/response-tap.js';

/** A reader that keeps every chunk as text, in order. */
function textReader(): ResponseReader & { chunks: string[] } {
  const chunks: string[] = [];
  return {
    chunks,
    read(chunk) {
      if (typeof chunk === 'string') chunks.push(chunk);
      else if (chunk instanceof Uint8Array) chunks.push(Buffer.from(chunk).toString('utf8'));
    },
  };
}

/** A filter that sends each chunk in capitals, through the tap's pass functions. */
function shoutingFilter(tap: ResponseTap, res: ServerResponse): ResponseFilter {
  const loud = (chunk: unknown) =>
    typeof chunk === 'string' || chunk instanceof Uint8Array ? Buffer.from(String(chunk).toUpperCase()) : chunk;
  return {
    write: (chunk, encoding, callback) =>
      tap.pass.write.call(res, loud(chunk), typeof encoding === 'function' ? encoding : undefined, callback),
    end: (chunk, encoding, callback) =>
      tap.pass.end.call(res, typeof chunk === 'function' ? chunk : loud(chunk), encoding, callback),
  };
}

const writeBefore = ServerResponse.prototype.write;
const endBefore = ServerResponse.prototype.end;

describe.each([
  ['Express 4', express4 as unknown as typeof express],
  ['Express 5', express],
])('a tapped %s response', (_name, factory) => {
  it('hands readers the chunks as written, and sends what the filter lets out', async () => {
    const readers = [textReader(), textReader()];
    const app = factory();
    app.get('/', (req, res) => {
      const tap = tapResponse(req, res);
      expect(tapResponse(req, res)).toBe(tap);
      for (const reader of readers) tap.read(reader);
      tap.filter(shoutingFilter(tap, res));
      res.setHeader('content-type', 'text/plain');
      res.write('hello ');
      res.write(Buffer.from('quiet '));
      res.end('world');
    });
    const answer = await request(app).get('/');
    expect(answer.text).toBe('HELLO QUIET WORLD');
    for (const reader of readers) expect(reader.chunks).toEqual(['hello ', 'quiet ', 'world']);
  });

  it("tells readers of the response's end after its last chunk, before the filter sends it", async () => {
    const seen: string[] = [];
    const app = factory();
    app.get('/', (req, res) => {
      const tap = tapResponse(req, res);
      tap.read({
        read: (chunk) => void seen.push(`read ${String(chunk)}`),
        end: () => void seen.push('end'),
      });
      tap.filter({
        write: (chunk, encoding, callback) => {
          seen.push(`sent ${String(chunk)}`);
          return tap.pass.write.call(res, chunk, encoding, callback);
        },
        end: (chunk, encoding, callback) => {
          seen.push(`sent last ${String(chunk)}`);
          return tap.pass.end.call(res, chunk, encoding, callback);
        },
      });
      res.setHeader('content-type', 'text/plain');
      res.write('a');
      res.end('b');
    });
    expect((await request(app).get('/')).text).toBe('ab');
    expect(seen).toEqual(['read a', 'sent a', 'read b', 'end', 'sent last b']);
  });

  it("patches no prototype: the wrappers are the response's own, and an untapped response is untouched", async () => {
    const app = factory();
    app.get('/tapped', (req, res) => {
      tapResponse(req, res);
      res.json({ ownWrite: Object.hasOwn(res, 'write'), ownEnd: Object.hasOwn(res, 'end') });
    });
    app.get('/plain', (_req, res) => {
      res.json({ ownWrite: Object.hasOwn(res, 'write'), ownEnd: Object.hasOwn(res, 'end') });
    });
    expect((await request(app).get('/tapped')).body).toEqual({ ownWrite: true, ownEnd: true });
    expect((await request(app).get('/plain')).body).toEqual({ ownWrite: false, ownEnd: false });
    expect(ServerResponse.prototype.write).toBe(writeBefore);
    expect(ServerResponse.prototype.end).toBe(endBefore);
    for (let proto = factory.response as object | null; proto; proto = Object.getPrototypeOf(proto) as object | null) {
      if (proto === ServerResponse.prototype) break;
      expect(Object.hasOwn(proto, 'write') || Object.hasOwn(proto, 'end')).toBe(false);
    }
  });
});

describe('tapResponse', () => {
  it('sees the bytes before a wrapper a middleware put on the response earlier', async () => {
    const reader = textReader();
    const app = express();
    // A middleware before the tap that rewrites what passes (as compression would).
    app.use((_req, res, next) => {
      const write = res.write.bind(res) as (chunk: unknown) => boolean;
      const end = res.end.bind(res) as (chunk?: unknown) => express.Response;
      res.write = ((chunk: unknown) => write(String(chunk).replaceAll('a', '4'))) as express.Response['write'];
      res.end = ((chunk?: unknown) =>
        end(chunk === undefined ? chunk : String(chunk).replaceAll('a', '4'))) as express.Response['end'];
      next();
    });
    app.get('/', (req, res) => {
      tapResponse(req, res).read(reader);
      res.write('banana ');
      res.end('bread');
    });
    expect((await request(app).get('/')).text).toBe('b4n4n4 bre4d');
    expect(reader.chunks).toEqual(['banana ', 'bread']);
  });

  it('refuses a second filter: two would disagree about what went out', async () => {
    let refused: unknown;
    const app = express();
    app.get('/', (req, res) => {
      const tap = tapResponse(req, res);
      const first = shoutingFilter(tap, res);
      tap.filter(first);
      tap.filter(first);
      try {
        tap.filter(shoutingFilter(tap, res));
      } catch (error) {
        refused = error;
      }
      res.end('once');
    });
    expect((await request(app).get('/')).text).toBe('ONCE');
    expect(refused).toBeInstanceOf(TollgateError);
    expect((refused as TollgateError).code).toBe('ERR_TG_CORE_TAP_FILTER');
  });

  it('taps a plain Node response, end callbacks included', async () => {
    const reader = textReader();
    let ended = false;
    const server = (req: IncomingMessage, res: ServerResponse) => {
      tapResponse(req, res).read(reader);
      res.write('one ', 'utf8');
      res.end('two', () => (ended = true));
    };
    expect((await request(server).get('/')).text).toBe('one two');
    expect(reader.chunks).toEqual(['one ', 'two']);
    expect(ended).toBe(true);
  });
});
