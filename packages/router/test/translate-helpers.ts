// Fixtures and stream helpers shared by the translation tests.
import { readFileSync } from 'node:fs';
import { SseDecoder } from '@tollgate/providers/sse';
import type { StreamTranslator } from '../src/translate/index.js';

const fixtures = new URL('./fixtures/translate/', import.meta.url);

export function fixtureText(name: string): string {
  return readFileSync(new URL(name, fixtures), 'utf8');
}

export function fixtureJson(name: string): Record<string, unknown> {
  return JSON.parse(fixtureText(name)) as Record<string, unknown>;
}

/** A small seeded generator (mulberry32), so a failing split can be replayed from its seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `text` cut at random places (anywhere: inside lines, CRLFs and surrogate pairs). */
export function randomSplit(text: string, random: () => number, maxPiece = 40): string[] {
  const pieces: string[] = [];
  let at = 0;
  while (at < text.length) {
    const length = 1 + Math.floor(random() * maxPiece);
    pieces.push(text.slice(at, at + length));
    at += length;
  }
  return pieces;
}

/** Everything a translator writes for the given chunks, end included. */
export function runStream(translator: StreamTranslator, chunks: Iterable<string | Uint8Array>): string {
  let out = '';
  for (const chunk of chunks) out += translator.push(chunk);
  return out + translator.end();
}

export interface ParsedEvent {
  event: string;
  data: string;
  json: Record<string, unknown> | undefined;
}

/** The events of an SSE text, parsed. */
export function parseEvents(text: string): ParsedEvent[] {
  const decoder = new SseDecoder();
  const blocks = decoder.push(Buffer.from(text));
  const last = decoder.end();
  if (last) blocks.push(last);
  return blocks
    .filter((block) => block.hasData)
    .map((block) => {
      let json: Record<string, unknown> | undefined;
      try {
        json = JSON.parse(block.data) as Record<string, unknown>;
      } catch {
        json = undefined;
      }
      return { event: block.event, data: block.data, json };
    });
}
