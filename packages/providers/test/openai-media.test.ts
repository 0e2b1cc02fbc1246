// OpenAI's audio and image APIs in their adapters: what a request asks for (the reservation), what an answer reports
// (the bill), the request checks, uploads read and forwarded, and the mock answering each.
import { Readable } from 'node:stream';
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from '@jest/globals';
import express from 'express';
import request from 'supertest';
import { adapterFor } from '../src/index.js';
import { createMockProvider } from '../src/mock.js';
import { imageOutputTokens } from '../src/openai-images/image-tokens.js';
import { imagesMedia } from '../src/openai-images/index.js';
import { speechMedia } from '../src/openai-speech/index.js';
import { audioSeconds } from '../src/openai-transcriptions/audio-length.js';
import { transcriptionMedia } from '../src/openai-transcriptions/index.js';
import { readUploadForm, UploadFormError, withFormFields } from '../src/upload-form.js';

const countNothing = () => 0;

/** A PCM WAV header (16 kHz, 16-bit mono: 32,000 bytes a second) for `seconds`, and its samples. */
function wav(seconds: number): Buffer {
  const data = 32_000 * seconds;
  const header = Buffer.alloc(44);
  header.write('RIFFxxxxWAVEfmt ', 0, 'latin1');
  header.writeUInt32LE(16, 16);
  header.writeUInt32LE(32_000, 28);
  header.write('data', 36, 'latin1');
  header.writeUInt32LE(data, 40);
  return Buffer.concat([header, Buffer.alloc(data)]);
}

/** A request of `body` as Node would give it to a form reader. */
function incoming(body: Buffer, contentType: string): IncomingMessage {
  const stream = Readable.from([body]) as unknown as IncomingMessage;
  stream.headers = { 'content-type': contentType };
  return stream;
}

const BOUNDARY = 'b0undary';
function form(parts: { name: string; value: Buffer | string; filename?: string }[]): Buffer {
  const pieces = parts.flatMap(({ name, value, filename }) => [
    Buffer.from(
      `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"${filename ? `; filename="${filename}"\r\nContent-Type: audio/wav` : ''}\r\n\r\n`,
    ),
    Buffer.isBuffer(value) ? value : Buffer.from(value),
    Buffer.from('\r\n'),
  ]);
  return Buffer.concat([...pieces, Buffer.from(`--${BOUNDARY}--\r\n`)]);
}

describe('speech', () => {
  const adapter = adapterFor('openai.speech');

  it('asks for its characters, and the audio they may become (more when slower)', () => {
    expect(speechMedia({ input: 'héllo' })).toEqual({ characters: 5, audioOutputTokens: 10 });
    expect(speechMedia({ input: 'héllo', speed: 0.5 })).toEqual({ characters: 5, audioOutputTokens: 20 });
    expect(speechMedia({ input: 'héllo', speed: 4 })).toEqual({ characters: 5, audioOutputTokens: 10 });
    expect(adapter.read({ body: { model: 'tts-1', input: 'hi', stream_format: 'sse' } })).toMatchObject({
      model: 'tts-1',
      outputCap: 0,
      stream: true,
    });
  });

  it('reads the usage of a stream, else bills what the request asked for', () => {
    const body = { model: 'gpt-4o-mini-tts', input: 'four', voice: 'alloy' };
    const streamed = adapter.createReader({ request: body });
    streamed.onEvent('', JSON.stringify({ type: 'speech.audio.delta', audio: 'AAAA' }));
    expect(streamed.finalUsageAt).toBeUndefined();
    streamed.onEvent('', JSON.stringify({ type: 'speech.audio.done', usage: { input_tokens: 3, output_tokens: 40 } }));
    expect(streamed.finalUsageAt).toEqual(['usage']);
    expect(streamed.result(countNothing)).toMatchObject({
      source: 'provider',
      usage: { inputTokens: 3, outputTokens: 0, media: { characters: 4, audioOutputTokens: 40 } },
    });
    expect(adapter.createReader({ request: body }).result(countNothing)).toMatchObject({
      source: 'counted',
      usage: { media: { characters: 4, audioOutputTokens: 8 } },
    });
  });

  it('refuses what OpenAI refuses, naming the field', () => {
    const check = (body: Record<string, unknown>) => adapter.checkRequest!({ model: 'tts-1', voice: 'alloy', ...body });
    expect(check({ input: '' })?.param).toBe('input');
    expect(check({ input: 'x'.repeat(4097) })?.param).toBe('input');
    expect(check({ input: 'hi', voice: 3 })?.param).toBe('voice');
    expect(check({ input: 'hi', speed: 5 })?.param).toBe('speed');
    expect(check({ input: 'hi', response_format: 'ogg' })?.param).toBe('response_format');
    expect(check({ input: 'hi', response_format: 'wav', speed: 1.5 })).toBeUndefined();
  });
});

describe('image generation', () => {
  const adapter = adapterFor('openai.images');

  it("reserves n images at their quality and size, and gpt-image's tokens by OpenAI's table", () => {
    expect(imageOutputTokens('high', '1024x1536')).toBe(6240);
    expect(imageOutputTokens('low', '1024x1024')).toBe(272);
    // auto: the dearest of the size, or of every size; a size the table lacks scales the dearest by its pixels.
    expect(imageOutputTokens('auto', '1024x1024')).toBe(4160);
    expect(imageOutputTokens('auto', 'auto')).toBe(6240);
    expect(imageOutputTokens('high', '2048x2048')).toBe(16_640);
    expect(imageOutputTokens('medium', '1024x1024', 2)).toBe(1256);
    expect(imagesMedia({ model: 'dall-e-3', n: 1 })).toMatchObject({
      images: 1,
      imageQuality: 'auto',
      imageSize: '1024x1024',
    });
    expect(imagesMedia({ model: 'gpt-image-1', n: 2, quality: 'low', size: '1536x1024' })).toMatchObject({
      images: 2,
      imageOutputTokens: 800,
    });
  });

  it('bills the images the answer holds at the size it says, and gpt-image usage in its classes', () => {
    const dallE = adapter.createReader({ request: { model: 'dall-e-2', n: 3, size: '512x512', prompt: 'p' } });
    dallE.onJson({ created: 1, data: [{ url: 'u' }, { url: 'u' }] });
    expect(dallE.result(countNothing)?.usage.media).toMatchObject({ images: 2, imageSize: '512x512' });
    const gptImage = adapter.createReader({ request: { model: 'gpt-image-1', prompt: 'p' } });
    gptImage.onJson({
      data: [{ b64_json: 'x' }],
      size: '1024x1536',
      usage: {
        input_tokens: 50,
        input_tokens_details: { text_tokens: 20, image_tokens: 30 },
        output_tokens: 1600,
        output_tokens_details: { image_tokens: 1584, text_tokens: 16 },
      },
    });
    expect(gptImage.result(countNothing)).toMatchObject({
      source: 'provider',
      usage: {
        inputTokens: 20,
        outputTokens: 16,
        media: { images: 1, imageSize: '1024x1536', imageInputTokens: 30, imageOutputTokens: 1584 },
      },
    });
  });

  it('refuses a missing prompt and more than 10 images', () => {
    expect(adapter.checkRequest!({ model: 'dall-e-3' })?.param).toBe('prompt');
    expect(adapter.checkRequest!({ model: 'dall-e-2', prompt: 'p', n: 11 })?.param).toBe('n');
    expect(adapter.checkRequest!({ model: 'dall-e-2', prompt: 'p', n: 10 })).toBeUndefined();
  });
});

describe('transcriptions', () => {
  const adapter = adapterFor('openai.transcriptions');

  it("knows a WAV file's length from its header, and bounds any other file by its size", () => {
    const file = wav(3);
    expect(
      audioSeconds({ filename: 'a.wav', contentType: 'audio/wav', bytes: file.length, head: file.subarray(0, 4096) }),
    ).toEqual({ seconds: 3, exact: true });
    // 75,000 bytes at 750 bytes a second (6 kbit/s, Opus's floor).
    expect(
      audioSeconds({ filename: 'a.mp3', contentType: 'audio/mpeg', bytes: 75_000, head: Buffer.alloc(64) }),
    ).toEqual({ seconds: 100, exact: false });
  });

  it('asks for the seconds, the audio tokens and the transcript they may become', () => {
    const file = { filename: 'a.wav', contentType: 'audio/wav', bytes: wav(2).length, head: wav(2).subarray(0, 4096) };
    expect(transcriptionMedia({ model: 'whisper-1', file })).toEqual({
      audioSeconds: 2,
      audioInputTokens: 50,
      transcriptTokens: 24,
    });
  });

  it("reads a whisper answer's seconds and a gpt-4o-transcribe answer's tokens; a text answer bills the request", () => {
    const file = { filename: 'a.wav', contentType: 'audio/wav', bytes: wav(4).length, head: wav(4).subarray(0, 4096) };
    const whisper = adapter.createReader({ request: { model: 'whisper-1', file } });
    whisper.onJson({ text: 'hi', usage: { type: 'duration', seconds: 3.2 } });
    expect(whisper.result(countNothing)?.usage.media).toEqual({ audioSeconds: 4 });
    const tokens = adapter.createReader({ request: { model: 'gpt-4o-transcribe', file } });
    tokens.onJson({
      text: 'hi',
      usage: { type: 'tokens', input_tokens: 40, input_token_details: { audio_tokens: 38 }, output_tokens: 5 },
    });
    expect(tokens.result(countNothing)?.usage).toMatchObject({
      inputTokens: 2,
      outputTokens: 5,
      media: { audioInputTokens: 38, audioSeconds: 4 },
    });
    const text = adapter.createReader({ request: { model: 'whisper-1', file, response_format: 'text' } });
    expect(text.result(countNothing)).toMatchObject({
      source: 'counted',
      usage: { outputTokens: 48, media: { audioSeconds: 4, audioInputTokens: 100 } },
    });
  });

  it('reads an upload as it streams: fields, the file described, the bytes kept whole', async () => {
    const audio = wav(1);
    const body = form([
      { name: 'file', value: audio, filename: 'a.wav' },
      { name: 'model', value: 'whisper-1' },
    ]);
    const read = await readUploadForm(incoming(body, `multipart/form-data; boundary=${BOUNDARY}`), 1_000_000);
    expect(read.bytes.equals(body)).toBe(true);
    expect(read.fields.model).toBe('whisper-1');
    expect(read.fields.file).toMatchObject({ filename: 'a.wav', contentType: 'audio/wav', bytes: audio.length });
    expect(adapter.checkRequest!(read.fields)).toBeUndefined();
    // A downgrade's model replaces the field's value, and nothing else.
    const rewritten = withFormFields(read, { model: 'gpt-4o-mini-transcribe' });
    expect(rewritten.toString('latin1')).toBe(body.toString('latin1').replace('whisper-1', 'gpt-4o-mini-transcribe'));
    expect(withFormFields(read, { model: 'whisper-1' })).toBe(read.bytes);
  });

  it('rewrites only text fields, found by the boundary: a file holding the same words is left alone', async () => {
    const audio = Buffer.from('name="prompt"\r\n\r\nmy secret, inside the audio');
    const body = form([
      { name: 'file', value: audio, filename: 'a.wav' },
      { name: 'prompt', value: 'call me at 555-0100' },
      { name: 'model', value: 'whisper-1' },
    ]);
    const read = await readUploadForm(incoming(body, `multipart/form-data; boundary=${BOUNDARY}`), 1_000_000);
    const masked = withFormFields(read, { prompt: 'call me at [PHONE]', model: 'whisper-1', file: 'ignored' });
    const expected = body.toString('latin1').replace('\r\n\r\ncall me at 555-0100', '\r\n\r\ncall me at [PHONE]');
    expect(masked.toString('latin1')).toBe(expected);
    expect(masked.includes(audio)).toBe(true);
  });

  it('refuses an upload past its limit (413), a malformed one and a JSON body (400)', async () => {
    const body = form([{ name: 'file', value: Buffer.alloc(5000), filename: 'a.wav' }]);
    const type = `multipart/form-data; boundary=${BOUNDARY}`;
    await expect(readUploadForm(incoming(body, type), 1000)).rejects.toMatchObject({ status: 413 });
    const cut = body.subarray(0, 200);
    await expect(readUploadForm(incoming(cut, type), 1_000_000)).rejects.toBeInstanceOf(UploadFormError);
    await expect(readUploadForm(incoming(Buffer.from('{}'), 'application/json'), 1000)).rejects.toMatchObject({
      status: 400,
    });
    expect(adapter.checkRequest!({ model: 'whisper-1' })?.param).toBe('file');
  });
});

describe('the mock answers every media API as OpenAI does', () => {
  const app = createMockProvider().app;

  it('speaks audio bytes, or SSE with usage', async () => {
    const audio = await request(app)
      .post('/v1/audio/speech')
      .send({ model: 'tts-1', input: 'hello', voice: 'alloy', response_format: 'wav' });
    expect(audio.status).toBe(200);
    expect(audio.headers['content-type']).toBe('audio/wav');
    const events = await request(app)
      .post('/v1/audio/speech')
      .send({ model: 'gpt-4o-mini-tts', input: 'hello', voice: 'alloy', stream_format: 'sse' });
    expect(events.text).toContain('"type":"speech.audio.done"');
  });

  it('makes images, with usage for gpt-image', async () => {
    const dallE = await request(app).post('/v1/images/generations').send({ model: 'dall-e-3', prompt: 'p', n: 1 });
    expect(dallE.body.data).toHaveLength(1);
    expect(dallE.body.usage).toBeUndefined();
    const gpt = await request(app).post('/v1/images/generations').send({ model: 'gpt-image-1', prompt: 'p', n: 2 });
    expect(gpt.body.usage.output_tokens).toBe(544);
  });

  it('transcribes an upload: seconds for whisper, tokens otherwise, plain text when asked', async () => {
    const send = (model: string, format?: string) => {
      const test = request(express().use(app)).post('/v1/audio/transcriptions').field('model', model);
      if (format) test.field('response_format', format);
      return test.attach('file', wav(2), { filename: 'a.wav', contentType: 'audio/wav' });
    };
    expect((await send('whisper-1')).body.usage).toEqual({ type: 'duration', seconds: 2 });
    expect((await send('gpt-4o-transcribe')).body.usage.input_token_details.audio_tokens).toBe(20);
    const text = await send('whisper-1', 'text');
    expect(text.headers['content-type']).toMatch(/^text\/plain/);
  });
});
