// Reads a provider request's JSON body: at once from what Node holds of it, else through express.json.
import type { IncomingMessage } from 'node:http';
import bytes from 'bytes';
import express from 'express';
import type { NextFunction, Request, RequestHandler, Response } from 'express';

/** The media types read as JSON (express.json's `type`). */
export const JSON_BODY_TYPES = ['application/json', 'application/*+json'];
/** The content types read here: what the provider SDKs send. Any other spelling goes to express.json. */
const PLAIN_JSON_TYPES: ReadonlySet<string> = new Set(['application/json', 'application/json; charset=utf-8']);
const CONTENT_LENGTH = /^[1-9]\d*$/;
/** What JSON counts as whitespace before its first value: space, tab, line feed, carriage return. */
const JSON_SPACE: ReadonlySet<number> = new Set([0x20, 0x09, 0x0a, 0x0d]);
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;

/** `limit` in bytes, read as express.json reads it (a number of bytes, or a string such as "1mb"), with the same parser. */
export function limitInBytes(limit: number | string): number {
  const parsed = typeof limit === 'number' ? limit : bytes.parse(limit);
  if (parsed === null || Number.isNaN(parsed)) throw new TypeError(`bodyLimit ${JSON.stringify(limit)} is not a size`);
  return parsed;
}

/**
 * The whole body when Node holds all of it already (the usual case once the caller was authenticated:
 * a small body comes with its headers), sent as plain JSON without a content encoding and within the limit.
 */
function bufferedBody(req: IncomingMessage, maxBytes: number): Buffer | undefined {
  const { headers } = req;
  const type = headers['content-type'];
  if (
    type === undefined ||
    !PLAIN_JSON_TYPES.has(type) ||
    headers['content-encoding'] !== undefined ||
    headers['transfer-encoding'] !== undefined
  )
    return undefined;
  const declared = headers['content-length'];
  if (declared === undefined || !CONTENT_LENGTH.test(declared)) return undefined;
  const length = Number(declared);
  if (
    length > maxBytes ||
    !req.complete ||
    req.readableDidRead ||
    req.readableLength !== length ||
    req.socket?.readable === false
  )
    return undefined;
  return (req.read() as Buffer | null) ?? undefined;
}

/** What express.json makes of a body: an object or an array (its strict mode), read as UTF-8 without a byte order mark. */
function parseJson(body: Buffer): unknown {
  const start = body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf ? 3 : 0;
  let first = start;
  while (first < body.length && JSON_SPACE.has(body[first]!)) first++;
  if (body[first] !== OPEN_BRACE && body[first] !== OPEN_BRACKET) throw new SyntaxError('not a JSON object or array');
  return JSON.parse(body.toString('utf8', start));
}

/**
 * express.json for the provider routes, with the same limit, types and answers. A body Node already
 * holds whole, sent as plain JSON, is read and parsed at once; any other request (streamed in, another
 * charset or spelling, compressed, empty, over the limit) goes to express.json itself.
 */
export function providerJsonBody(limit: number | string): RequestHandler {
  const maxBytes = limitInBytes(limit);
  const general = express.json({ limit, type: JSON_BODY_TYPES });
  return function readProviderJsonBody(req: Request, res: Response, next: NextFunction): void {
    const body = bufferedBody(req, maxBytes);
    if (body === undefined) {
      general(req, res, next);
      return;
    }
    try {
      req.body = parseJson(body);
    } catch (error) {
      // Marked as express.json marks its parse failures: core's apiErrorHandler answers both alike.
      next(
        Object.assign(error as SyntaxError, {
          type: 'entity.parse.failed',
          status: 400,
          statusCode: 400,
          expose: true,
        }),
      );
      return;
    }
    next();
  };
}
