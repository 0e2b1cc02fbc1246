// attribution(): end user, feature and tags from the key, then the headers, then the declared call's body; `require`
// refuses with 400 attribution_required; malformed headers are 400 invalid_request naming them; a body end user that
// cannot be a user id is served and kept as clientUserId.
import { createHash } from 'node:crypto';
import { describe, expect, it } from '@jest/globals';
import type { RequestHandler } from 'express';
import request from 'supertest';
import { getContext, TollgateError } from '@tollgate/core';
import type { CallAdapter } from '@tollgate/core/provider-call';
import { apiKeyAuth, attribution } from '../src/index.js';
import { createServer, makeKey } from './helpers.js';

const app = makeKey({ userId: undefined, feature: undefined });
const alice = makeKey({ userId: 'alice', feature: 'support-bot' });
const mobile = makeKey({ userId: undefined, tags: ['mobile', 'eu'] });
const keys = [app.record, alice.record, mobile.record];

/** An API whose body names its end user in `end_user` (as OpenAI's `user`), declared as a provider route does. */
const adapter: CallAdapter = {
  api: 'openai.chat',
  provider: 'openai',
  read: ({ body }) => ({ model: (body as { model?: string }).model, outputCap: undefined, stream: false, choices: 1 }),
  writeOutputCap: () => undefined,
  writeModel: () => undefined,
  readUsage: () => undefined,
  endUserField: 'end_user',
};
const declareCall: RequestHandler = (req, res, next) => {
  getContext(req, res).declareCall(adapter, { body: req.body as unknown });
  next();
};

const sha256Hex = (text: string) => createHash('sha256').update(text).digest('hex');

/** A header sent once per value: superagent sends an array so, though its types allow one only for Cookie. */
const repeated = (values: string[]) => values as unknown as string;

function serverWith(options: Parameters<typeof attribution>[0] = {}) {
  return createServer(apiKeyAuth({ keys }) as RequestHandler, declareCall, attribution(options) as RequestHandler);
}

describe('attribution: where each field comes from', () => {
  it('takes the end user, feature and tags from the default headers for a key that names none', async () => {
    const res = await request(serverWith())
      .post('/v1/chat')
      .set('x-api-key', app.key)
      .set('x-tollgate-user', '  user-42 ')
      .set('x-tollgate-feature', 'search')
      .set('x-tollgate-tags', 'eu, beta,,eu ,team:search')
      .send({ model: 'm' });
    expect(res.status).toBe(200);
    expect(res.body.identity).toMatchObject({
      userId: 'user-42',
      feature: 'search',
      tags: ['eu', 'beta', 'team:search'],
    });
  });

  it("keeps what the key fixes: no header or body changes the key's user or feature", async () => {
    const res = await request(serverWith())
      .post('/v1/chat')
      .set('x-api-key', alice.key)
      .set('x-tollgate-user', 'mallory')
      .set('x-tollgate-feature', 'billing')
      .send({ model: 'm', end_user: 'eve' });
    expect(res.body.identity).toMatchObject({ userId: 'alice', feature: 'support-bot' });
    // The key's record (which a store may hand to every request) is untouched by an attributed request.
    await request(serverWith()).post('/v1/chat').set('x-api-key', app.key).set('x-tollgate-user', 'bob').send({});
    expect(app.record.userId).toBeUndefined();
  });

  it("takes the body's end-user field when no header names one; the header wins over the body", async () => {
    const server = serverWith();
    const fromBody = await request(server).post('/v').set('x-api-key', app.key).send({ model: 'm', end_user: 'u-1' });
    expect(fromBody.body.identity.userId).toBe('u-1');
    const both = await request(server)
      .post('/v')
      .set('x-api-key', app.key)
      .set('x-tollgate-user', 'u-2')
      .send({ model: 'm', end_user: 'u-1' });
    expect(both.body.identity.userId).toBe('u-2');
    const off = await request(serverWith({ bodyUser: false }))
      .post('/v')
      .set('x-api-key', app.key)
      .send({ model: 'm', end_user: 'u-1' });
    expect(off.body.identity.userId).toBeUndefined();
  });

  it('reads the headers the options name, and none that is turned off', async () => {
    const server = serverWith({ userHeader: 'X-End-User', featureHeader: false, tagsHeader: 'x-labels' });
    const res = await request(server)
      .post('/v')
      .set('x-api-key', app.key)
      .set('x-end-user', 'u-9')
      .set('x-tollgate-user', 'ignored')
      .set('x-tollgate-feature', 'ignored')
      .set('x-labels', 'a,b')
      .send({});
    expect(res.body.identity).toMatchObject({ userId: 'u-9', tags: ['a', 'b'] });
    expect(res.body.identity.feature).toBeUndefined();
  });

  it("adds the header's tags to the key's own, bounding only the header's", async () => {
    const server = serverWith({ maxTags: 2 });
    const own = await request(server).post('/v').set('x-api-key', mobile.key).send({});
    expect(own.body.identity.tags).toEqual(['mobile', 'eu']);
    const both = await request(server)
      .post('/v')
      .set('x-api-key', mobile.key)
      .set('x-tollgate-tags', 'eu,beta')
      .send({});
    expect(both.body.identity.tags).toEqual(['mobile', 'eu', 'beta']);
    expect(mobile.record.tags).toEqual(['mobile', 'eu']);
  });

  it('adds the tags of a repeated tags header together', async () => {
    const res = await request(serverWith())
      .post('/v')
      .set('x-api-key', app.key)
      .set('x-tollgate-tags', repeated(['a,b', 'c']))
      .send({});
    expect(res.body.identity.tags).toEqual(['a', 'b', 'c']);
  });
});

describe('attribution: require', () => {
  it('refuses a request without a required field with 400 attribution_required naming how to send it', async () => {
    const server = serverWith({ require: ['user', 'feature'] });
    const missingUser = await request(server).post('/v').set('x-api-key', app.key).send({});
    expect(missingUser.status).toBe(400);
    expect(missingUser.body.error).toEqual({
      message: "This request must name its end user: send the x-tollgate-user header or the body's end_user.",
      type: 'invalid_request_error',
      code: 'attribution_required',
      param: 'user',
    });
    const missingFeature = await request(server)
      .post('/v')
      .set('x-api-key', app.key)
      .set('x-tollgate-user', 'u')
      .send({});
    expect(missingFeature.body.error).toMatchObject({ code: 'attribution_required', param: 'feature' });
    // A key that fixes both needs no header.
    expect((await request(server).post('/v').set('x-api-key', alice.key).send({})).status).toBe(200);
    const tags = serverWith({ require: ['tags'] });
    expect(
      (await request(tags).post('/v').set('x-api-key', app.key).set('x-tollgate-tags', ' , ').send({})).status,
    ).toBe(400);
    expect((await request(tags).post('/v').set('x-api-key', app.key).set('x-tollgate-tags', 'x').send({})).status).toBe(
      200,
    );
  });

  it('notes the refusal on the context, layer attribution', async () => {
    let refusal: unknown;
    const server = createServer(
      apiKeyAuth({ keys }) as RequestHandler,
      (req, res, next) => {
        res.on('finish', () => (refusal = getContext(req, res).refusal));
        next();
      },
      attribution({ require: ['user'] }) as RequestHandler,
    );
    await request(server).post('/v').set('x-api-key', app.key).send({});
    expect(refusal).toMatchObject({ layer: 'attribution', code: 'attribution_required', status: 400 });
  });

  it('answers 500 misconfigured_route with no auth before it', async () => {
    const res = await request(createServer(attribution() as RequestHandler))
      .post('/v')
      .send({});
    expect(res.status).toBe(500);
    expect(res.body.error.code).toBe('misconfigured_route');
  });
});

describe('attribution: malformed values are 400 invalid_request, never a crash', () => {
  const server = serverWith({ require: ['user'] });
  const send = () => request(server).post('/v').set('x-api-key', app.key);

  it.each([
    ['a user header past 128 characters', { 'x-tollgate-user': 'u'.repeat(129) }, 'x-tollgate-user'],
    ['a feature header past 128 characters', { 'x-tollgate-feature': 'f'.repeat(129) }, 'x-tollgate-feature'],
    ['a user header with a non-ASCII byte', { 'x-tollgate-user': 'jos\u00e9' }, 'x-tollgate-user'],
    ['a user header with a tab', { 'x-tollgate-user': 'a\tb' }, 'x-tollgate-user'],
    ['17 tags', { 'x-tollgate-tags': Array.from({ length: 17 }, (_, i) => `t${i}`).join(',') }, 'x-tollgate-tags'],
    ['a tag past 128 characters', { 'x-tollgate-tags': `ok,${'t'.repeat(129)}` }, 'x-tollgate-tags'],
    ['a huge tags header', { 'x-tollgate-tags': 'x'.repeat(12_000) }, 'x-tollgate-tags'],
  ])('%s', async (_what, headers, param) => {
    const res = await send().set(headers).send({});
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: 'invalid_request', param });
    expect(res.body.error.message).toContain(param);
  });

  it('a user header sent twice (Node would join them into "a, b")', async () => {
    const res = await send()
      .set('x-tollgate-user', repeated(['a', 'b']))
      .send({});
    expect(res.body.error).toMatchObject({
      code: 'invalid_request',
      param: 'x-tollgate-user',
      message: 'Send the x-tollgate-user header once.',
    });
  });

  it.each([
    ['a number', 42],
    ['an object', { id: 'x' }],
  ])('a body end user that is %s (the provider refuses it too)', async (_what, value) => {
    const res = await send().send({ end_user: value });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({
      code: 'invalid_request',
      param: 'end_user',
      message: 'end_user must be a string.',
    });
  });
  it('accepts a body end user in any script, and a null one as none', async () => {
    expect((await send().send({ end_user: 'ユーザー-7' })).body.identity.userId).toBe('ユーザー-7');
    expect((await send().send({ end_user: null })).body.error.code).toBe('attribution_required');
  });
});

describe('attribution: a body end user that cannot be a user id is served and kept, not refused', () => {
  const send = (options: Parameters<typeof attribution>[0] = {}) =>
    request(serverWith(options)).post('/v').set('x-api-key', app.key);
  /** What Claude Code sends as metadata.user_id: a JSON object as a string, about 140 characters. */
  const claudeCode = JSON.stringify({
    device_id: 'd'.repeat(64),
    account_uuid: '',
    session_id: '5c0ffee0-0000-4000-8000-000000000001',
  });

  it.each([
    ["Claude Code's JSON", claudeCode, claudeCode],
    ['1024 characters', 'ü'.repeat(1024), 'ü'.repeat(1024)],
    ['past 1024 characters (kept as its hash)', 'u'.repeat(1025), `sha256:${sha256Hex('u'.repeat(1025))}`],
    ['a control character (kept as its hash)', 'a\u0007b', `sha256:${sha256Hex('a\u0007b')}`],
    ['a line separator (kept as its hash)', 'a\u2028b', `sha256:${sha256Hex('a\u2028b')}`],
  ])('%s: no user, kept as clientUserId', async (_what, value, kept) => {
    const res = await send().send({ end_user: value });
    expect(res.status).toBe(200);
    expect(res.body.identity.userId).toBeUndefined();
    expect(res.body.identity.clientUserId).toBe(kept);
  });

  it('is not a user: a route that requires one refuses it with 400 attribution_required', async () => {
    const res = await send({ require: ['user'] }).send({ end_user: 'x'.repeat(200) });
    expect(res.body.error).toMatchObject({ code: 'attribution_required', param: 'user' });
  });

  it('a value within maxLength stays the user, as before', async () => {
    const res = await send().send({ end_user: 'u'.repeat(128) });
    expect(res.body.identity.userId).toBe('u'.repeat(128));
    expect(res.body.identity.clientUserId).toBeUndefined();
  });
});

describe('attribution: the session id', () => {
  const send = (options: Parameters<typeof attribution>[0] = {}) =>
    request(serverWith(options)).post('/v').set('x-api-key', app.key);
  const session = '5c0ffee0-0000-4000-8000-000000000001';

  it("reads Claude Code's and Codex's headers, the first one sent winning", async () => {
    const claude = await send().set('x-claude-code-session-id', session).set('session-id', 'other').send({});
    expect(claude.body.identity.sessionId).toBe(session);
    expect((await send().set('session-id', 'codex-1').send({})).body.identity.sessionId).toBe('codex-1');
    expect((await send().send({})).body.identity.sessionId).toBeUndefined();
  });

  it("else reads the session_id of Claude Code's JSON metadata.user_id; a bad one there is ignored", async () => {
    const json = (id: unknown) => JSON.stringify({ device_id: 'd'.repeat(64), session_id: id });
    expect((await send().send({ end_user: json(session) })).body.identity.sessionId).toBe(session);
    const bad = await send().send({ end_user: json('a b') });
    expect([bad.status, bad.body.identity.sessionId]).toEqual([200, undefined]);
    expect((await send().send({ end_user: json(7) })).body.identity.sessionId).toBeUndefined();
    expect((await send().send({ end_user: '{not json' })).body.identity.sessionId).toBeUndefined();
  });

  it('refuses a session header that is not a session id with 400 invalid_request naming it', async () => {
    for (const value of ['a b', 'x'.repeat(129), 'caf\u00e9']) {
      const res = await send().set('session-id', value).send({});
      expect([res.status, res.body.error.code, res.body.error.param]).toEqual([400, 'invalid_request', 'session-id']);
    }
  });

  it('reads the headers configured, or none', async () => {
    const own = await send({ sessionHeaders: ['X-Agent-Session'] })
      .set('x-agent-session', 's-1')
      .set('session-id', 's-2')
      .send({});
    expect(own.body.identity.sessionId).toBe('s-1');
    const none = await send({ sessionHeaders: false })
      .set('session-id', 's-2')
      .send({ end_user: JSON.stringify({ session_id: 's-3' }) });
    expect(none.body.identity.sessionId).toBeUndefined();
    expect(() => attribution({ sessionHeaders: ['bad header'] })).toThrow(/sessionHeaders/);
    expect(() => attribution({ userHeader: 'session-id' })).toThrow(/must differ/);
  });
});

describe('attribution: options', () => {
  it('refuses unknown or malformed options at construction', () => {
    expect(() => attribution({ requre: ['user'] } as never)).toThrow(/did you mean "require"/);
    expect(() => attribution({ require: ['email'] as never })).toThrow(TollgateError);
    expect(() => attribution({ userHeader: 'bad header' })).toThrow(/userHeader must be a header name/);
    expect(() => attribution({ userHeader: 'x-a', featureHeader: 'X-A' })).toThrow(/must differ/);
    expect(() => attribution({ maxTags: 0 })).toThrow(/maxTags must be an integer from 1 to 256/);
    expect(() => attribution({ maxLength: 1.5 })).toThrow(/maxLength/);
    expect(() => attribution({ bodyUser: 'yes' as never })).toThrow(/bodyUser/);
  });

  it('bounds lengths and tag counts as configured', async () => {
    const server = serverWith({ maxLength: 4, maxTags: 2 });
    const ok = await request(server).post('/v').set('x-api-key', app.key).set('x-tollgate-tags', 'abcd,ef').send({});
    expect(ok.body.identity.tags).toEqual(['abcd', 'ef']);
    const long = await request(server).post('/v').set('x-api-key', app.key).set('x-tollgate-user', 'abcde').send({});
    expect(long.status).toBe(400);
    const many = await request(server).post('/v').set('x-api-key', app.key).set('x-tollgate-tags', 'a,b,c').send({});
    expect(many.body.error.message).toBe('The x-tollgate-tags header must hold at most 2 tags.');
  });
});
