// Benchmark 15: what prompt guardrails with the default rules cost per request on a 2 KB chat prompt (in-process, paired rounds).
import { IncomingMessage, ServerResponse } from 'node:http';
import { promptGuardrails } from '@tollgate/guard';
import { providerCall } from '@tollgate/providers';
import type { NextFunction, Request, Response } from 'express';
import { DiscardSocket } from './lib/inject.js';
import type { BenchContext, SectionResult } from './lib/section.js';
import { bootstrapInterval, fmtNumber, table, TRIM, trimmedMean } from './lib/stats.js';

/** The target of issue 33: the default rules on a 2 KB prompt, per request. */
const TARGET_US = 5;
/** Requests per block: one block of each case per round, the first case alternating. */
const BLOCK = 200;

/** The rules the design names as the example (and the gateway README shows). */
const DEFAULT_RULES = {
  maxPromptChars: 200_000,
  deny: ['(?i)ignore (all|previous) instructions'],
  pii: 'mask' as const,
};

const SYSTEM =
  'You are the support assistant of an online shop that sells kitchen equipment in Europe and Japan. Answer in the ' +
  "customer's language, in short paragraphs, and never promise refunds or delivery dates that the order system does " +
  'not show. When a customer asks about an order, restate the order number and the items, then explain the next ' +
  'step. Prices are in euros including VAT unless the customer writes from Japan (yen, tax included). Escalate to a ' +
  'human when the customer is angry, mentions a lawyer, or asks twice for the same thing. Keep answers under 150 ' +
  'words. ';
const USER =
  'Hello, I ordered a cast-iron casserole (24 cm, red) and two chef knives on 12 March 2024, order 2024-118734, and ' +
  'paid €289.90 in total. The casserole arrived on the 19th but the lid has a crack of about 3 cm along the rim, and ' +
  'one of the knives is missing from the parcel even though the packing slip lists 3 items. I attached two photos to ' +
  'my previous message. Could you tell me whether you will send a new lid or a whole new casserole, and when the ' +
  'missing knife will ship? I am travelling from 2 to 9 April, so a delivery before or after those dates would be ' +
  'best. The first time I ordered from you, in 2022, everything went well, and I would like to keep buying here. ' +
  'Also, the invoice shows 19% VAT but I live in Austria, where it should be 20%; is that a mistake, or is the rate ' +
  'based on where the warehouse is? One last thing: your website says the knives are dishwasher safe, but the leaflet ' +
  'in the box says to wash them by hand. Which is right? Thank you for your help, and sorry for the long message. ' +
  'PS: 東京の友人にも同じ鍋を贈りたいのですが、日本への発送はできますか？ Another question, about the warranty: the ' +
  'product page mentions a lifetime guarantee on the enamel, while the leaflet speaks of 10 years. If the crack counts ' +
  'as a defect of the enamel, does it fall under that guarantee, and do I need to keep the original box for a claim? ' +
  'I still have it, but it takes a lot of room in a small flat, so I would rather recycle it. If you need anything ' +
  'else from me (the photos again, the packing slip), just say so. Best regards, Anna.';
/** The same prompt with an e-mail address, a phone number and a card number in it (each masked). */
const USER_WITH_PII = USER.replace(
  'I attached two photos',
  'Reach me at anna.berger@example.at or +43 664 123 4567; I paid with 4111 1111 1111 1111 and attached photos',
);

/** Prompt characters of the benchmark's request: the system prompt and the customer's message, cut to fit. */
const PROMPT_CHARS = 2048;

function chatBody(user: string): string {
  if (SYSTEM.length + user.length < PROMPT_CHARS) throw new Error('the benchmark prompt is shorter than 2 KB');
  return JSON.stringify({
    model: 'gpt-4o-mini',
    max_tokens: 300,
    messages: [
      { role: 'system', content: SYSTEM },
      { role: 'user', content: user.slice(0, PROMPT_CHARS - SYSTEM.length) },
    ],
  });
}

type Middleware = (req: Request, res: Response, next: NextFunction) => void;

const declare = providerCall('openai.chat') as unknown as Middleware;
const guardrails = promptGuardrails(DEFAULT_RULES) as unknown as Middleware;

/**
 * A block of `count` requests: each a fresh body parsed from `text`, a request and response of Node's own on a socket
 * that discards, its call declared; then the guardrails when `guarded`. CPU µs (user + system) per request.
 */
function runBlock(text: string, guarded: boolean, count: number): number {
  let passed = 0;
  const next = (error?: unknown) => {
    if (error) throw error instanceof Error ? error : new Error(String(error));
    passed++;
  };
  const start = process.cpuUsage();
  for (let i = 0; i < count; i++) {
    const socket = new DiscardSocket();
    const req = new IncomingMessage(socket as never) as unknown as Request;
    req.headers = {};
    (req as { body?: unknown }).body = JSON.parse(text);
    const res = new ServerResponse(req as never) as unknown as Response;
    declare(req, res, next);
    if (guarded) guardrails(req, res, next);
  }
  const used = process.cpuUsage(start);
  if (passed !== count * (guarded ? 2 : 1))
    throw new Error('a request was refused: the benchmark measures passes only');
  return (used.user + used.system) / count;
}

/** Paired rounds of `body` with and without the guardrails: the added CPU per request, its 95% interval, and the halves. */
function measure(body: string, rounds: number) {
  for (let i = 0; i < 20; i++) {
    runBlock(body, false, BLOCK);
    runBlock(body, true, BLOCK);
  }
  const differences: number[] = [];
  const bare: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const guardedFirst = round % 2 === 0;
    const first = runBlock(body, guardedFirst, BLOCK);
    const second = runBlock(body, !guardedFirst, BLOCK);
    const [guarded, unguarded] = guardedFirst ? [first, second] : [second, first];
    differences.push(guarded - unguarded);
    bare.push(unguarded);
  }
  const half = Math.floor(rounds / 2);
  return {
    added: trimmedMean(differences),
    interval: bootstrapInterval(differences),
    halves: [trimmedMean(differences.slice(0, half)), trimmedMean(differences.slice(half))] as const,
    bare: trimmedMean(bare),
  };
}

export async function runGuardrailsBenchmark(context: BenchContext): Promise<SectionResult> {
  const rounds = context.quick ? 100 : 600;
  const clean = chatBody(USER);
  const withPii = chatBody(USER_WITH_PII);
  context.log(
    `guardrails: ${fmtNumber(rounds)} rounds of ${BLOCK} requests per case, a clean prompt then one with personal data`,
  );
  const cases = [
    { name: 'a clean 2 KB prompt (numbers, a date, prices, some Japanese)', result: measure(clean, rounds) },
    {
      name: 'the same with an e-mail address, a phone number and a card number (all masked)',
      result: measure(withPii, rounds),
    },
  ];
  const us = (value: number) => `${fmtNumber(value, 2)} µs`;
  const rows = cases.map(({ name, result }) => [
    name,
    us(result.bare),
    `+${us(result.added)} (${us(result.interval[0])} to ${us(result.interval[1])})`,
    `${us(result.halves[0])}, ${us(result.halves[1])}`,
  ]);
  const promptChars = (JSON.parse(clean) as { messages: { content: string }[] }).messages.reduce(
    (sum, message) => sum + message.content.length,
    0,
  );
  const body = [
    `\`promptGuardrails(${JSON.stringify(DEFAULT_RULES)})\` on a chat of ${fmtNumber(promptChars)} prompt characters, ` +
      `in-process; a block of ${BLOCK} requests of each case per round, the first alternating (${fmtNumber(rounds)} ` +
      `rounds): the trimmed mean (${TRIM * 100}% off each end) of the per-round differences, with a 95% bootstrap interval.`,
    '',
    table(
      ['prompt', 'CPU per request without', 'added by the guardrails (95% interval)', 'first half, second half'],
      rows,
    ),
  ].join('\n');
  const main = cases[0]!.result;
  return {
    title: '15. Prompt guardrails: the default rules on a 2 KB prompt (in-process)',
    body,
    targets: [
      {
        target: `Prompt guardrails with the default rules cost at most ${TARGET_US} µs per request on a 2 KB prompt`,
        holds: main.added <= TARGET_US,
        figures: `+${us(main.added)} (95% interval ${us(main.interval[0])} to ${us(main.interval[1])})`,
      },
    ],
    findings: [
      `Prompt guardrails (maxPromptChars, one deny pattern, pii mask) add ${us(main.added)} of CPU to a 2 KB chat ` +
        `request, ${us(cases[1]!.result.added)} when it holds an e-mail address, a phone number and a card number (§15).`,
    ],
  };
}
