// Benchmark 3: token estimation time and event-loop stalls, tollgate's estimator against the exact BPE libraries.
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { askBenchChild, forkBench } from './lib/child.js';
import type { ConversationMeasurement, ConversationRequest } from './lib/conversation-child.js';
import type { InputMeasurement } from './lib/estimate-child.js';
import { estimationInputs } from './lib/inputs.js';
import type { BenchContext, SectionResult, TargetVerdict } from './lib/section.js';
import { fmtMs, fmtNumber, median, table } from './lib/stats.js';
import { TOKENIZERS } from './lib/tokenizers.js';

const ENTRY = fileURLToPath(new URL('./lib/estimate-child.ts', import.meta.url));
const CONVERSATION_ENTRY = fileURLToPath(new URL('./lib/conversation-child.ts', import.meta.url));

type Outcome =
  { kind: 'ok'; value: InputMeasurement } | { kind: 'timeout'; limitMs: number } | { kind: 'error'; message: string };

/** Runs one tokenizer over every input in one child, replacing the child when an input runs past the time limit. */
async function measureTokenizer(
  tokenizer: string,
  quick: boolean,
  limitMs: number,
  log: (m: string) => void,
): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  let child: ChildProcess | undefined;
  const inputs = estimationInputs(quick);
  for (let index = 0; index < inputs.length; index++) {
    child ??= forkBench(ENTRY);
    const current = child;
    const outcome = await new Promise<Outcome>((resolve) => {
      const timer = setTimeout(() => {
        current.kill('SIGKILL');
        resolve({ kind: 'timeout', limitMs });
      }, limitMs);
      current.once('message', (message: { ok: boolean; value?: InputMeasurement; error?: string }) => {
        clearTimeout(timer);
        resolve(
          message.ok ? { kind: 'ok', value: message.value! } : { kind: 'error', message: message.error ?? 'failed' },
        );
      });
      current.once('exit', (code, signal) => {
        clearTimeout(timer);
        resolve({ kind: 'error', message: `child exited (${code ?? signal})` });
      });
      current.send({ type: 'run', tokenizer, input: index, quick });
    });
    current.removeAllListeners('message');
    current.removeAllListeners('exit');
    if (outcome.kind !== 'ok') {
      current.kill('SIGKILL');
      child = undefined;
    }
    outcomes.push(outcome);
    log(
      `estimate: ${tokenizer} on ${inputs[index]!.name}: ${outcome.kind === 'ok' ? fmtMs(median(outcome.value.times)) : outcome.kind === 'timeout' ? `over ${limitMs / 1000} s` : outcome.message}`,
    );
    // An unavailable tokenizer fails the same way on every input: do not pay for it again.
    if (outcome.kind === 'error' && index === 0) {
      for (let rest = 1; rest < inputs.length; rest++) outcomes.push(outcome);
      break;
    }
  }
  child?.kill();
  return outcomes;
}

function cell(outcome: Outcome | undefined): string {
  if (!outcome) return '';
  if (outcome.kind === 'timeout') return `> ${outcome.limitMs / 1000} s (stopped)`;
  if (outcome.kind === 'error') return `fails: ${outcome.message.slice(0, 60)}`;
  return `${fmtMs(median(outcome.value.times))} (${fmtNumber(outcome.value.tokens)} tok${outcome.value.exact ? '' : ', bounded'})`;
}

export async function runEstimationBenchmark(context: BenchContext): Promise<SectionResult> {
  const limitMs = 10_000;
  const inputs = estimationInputs(context.quick);
  const results = new Map<string, Outcome[]>();
  for (const tokenizer of TOKENIZERS)
    results.set(tokenizer, await measureTokenizer(tokenizer, context.quick, limitMs, context.log));

  const tollgate = results.get('tollgate')!;
  const rows = inputs.map((input, index) => {
    const stall = tollgate[index];
    return [
      input.name,
      ...TOKENIZERS.map((name) => cell(results.get(name)![index])),
      stall?.kind === 'ok'
        ? fmtMs(stall.value.maxStallMs)
        : stall?.kind === 'timeout'
          ? `> ${limitMs / 1000} s`
          : 'n/a',
    ];
  });
  const unavailable = TOKENIZERS.flatMap((name) => {
    const first = results.get(name)![0];
    return first?.kind === 'error' ? [`- ${name}: ${first.message}`] : [];
  });
  const body = [
    `Median time per count (timed runs per input: ${inputs.map((i) => `${i.name} ${i.runs}`).join(', ')}), each run on a fresh text so ` +
      'no merge cache flatters anyone, after an untimed warm-up; token counts in brackets. Every tokenizer runs in its own child process ' +
      `and is stopped after ${limitMs / 1000} s on one input. gpt-tokenizer, js-tiktoken and tiktoken (WASM) count the raw text with o200k_base ` +
      "and are synchronous: they block the event loop for their whole time. tollgate's column is @tollgate/providers estimateInputTokensAsync, what meter() runs, with its defaults " +
      '(4 ms slices with an event-loop turn between them, a 250 ms counting budget), on a chat request ' +
      '(model gpt-4o, one user message holding the text), so its count includes the message overhead; "bounded" marks counts where its counting budget ran out and the rest of the text was counted as its UTF-8 byte length (an upper bound). "tollgate longest stall" is the longest ' +
      "time the event loop could not turn during tollgate's estimation (1 ms interval probe and monitorEventLoopDelay max).",
    '',
    table(['input', ...TOKENIZERS, 'tollgate longest stall'], rows),
    ...(unavailable.length > 0 ? ['', 'Not measured:', ...unavailable] : []),
  ];
  const chat: ConversationRequest = {
    conversations: context.quick ? 2 : 6,
    turns: 20,
    systemChars: 4_000,
    userChars: 400,
    replyChars: 800,
  };
  // Every turn of a few chats estimated as the meter does, with and without its count cache, in a child of their own.
  const talk = await askBenchChild<ConversationMeasurement>(CONVERSATION_ENTRY, chat, 'conversation');
  const calls = chat.conversations * chat.turns;
  const conversationRows = [
    [
      'no count cache',
      fmtMs(median(talk.uncachedMs)),
      fmtMs(median(talk.lastTurnUncachedMs)),
      `${talk.slicedUncached} of ${calls}`,
    ],
    [
      'the count cache (meter() default)',
      fmtMs(median(talk.cachedMs)),
      fmtMs(median(talk.lastTurnCachedMs)),
      `${talk.slicedCached} of ${calls}`,
    ],
  ];
  const conversationBody = [
    '',
    `**A conversation resent each turn.** ${chat.conversations} chats of ${chat.turns} turns, each turn sending the whole history again, as chat APIs are ` +
      `used: the same ${fmtNumber(chat.systemChars)}-character system prompt in every chat, then each turn's ${fmtNumber(chat.userChars)}-character question ` +
      `after the earlier questions and ${fmtNumber(chat.replyChars)}-character answers (prose and code, ${fmtNumber(talk.lastTurnTokens)} input tokens at the last turn). ` +
      'Every turn is estimated as meter() does it (at once when the new text is small, else in slices), once without a count cache and once with one ' +
      'kept across all chats (a meter keeps one; which goes first alternates by turn); both give the same counts or the run fails. CPU time (user + system) ' +
      'of the estimate; median over the chats.',
    '',
    table(['estimates', 'all turns of a chat', 'its last turn', 'turns counted in slices'], conversationRows),
  ];
  const stalls = tollgate.map((o) =>
    o.kind === 'ok' ? o.value.maxStallMs : o.kind === 'timeout' ? Number.POSITIVE_INFINITY : Number.NaN,
  );
  const measured = stalls.every((s) => !Number.isNaN(s));
  const worst = Math.max(...stalls);
  const worstInput = inputs[stalls.indexOf(worst)]?.name ?? '';
  const targets: TargetVerdict[] = [
    {
      target: 'No event-loop stall over 50 ms on any estimation input',
      holds: measured ? worst <= 50 : undefined,
      figures: measured
        ? `longest stall ${Number.isFinite(worst) ? fmtMs(worst) : `> ${limitMs / 1000} s`} (${worstInput})`
        : 'tollgate estimator not available',
    },
  ];
  const findings: string[] = [];
  if (measured && worst > 50) {
    const slow = inputs
      .map((input, index) => ({ input, outcome: tollgate[index]! }))
      .filter((x) => x.outcome.kind === 'ok' && x.outcome.value.maxStallMs > 50)
      .map((x) =>
        x.outcome.kind === 'ok'
          ? `${x.input.name}: ${fmtMs(median(x.outcome.value.times))} per count, stall ${fmtMs(x.outcome.value.maxStallMs)}${x.outcome.value.exact ? '' : ', time box hit'}`
          : '',
      );
    findings.push(
      `Estimation: estimateInputTokensAsync (what meter() runs) still blocked the event loop for more than 50 ms on ${slow.join('; ')} (§3). ` +
        'A stall longer than a slice means one stretch of work between two yields took that long.',
    );
  }
  // Where the time box cut counting short, how far above the exact count the bound landed (what token limits and budgets then reserve).
  const exactCounts = TOKENIZERS.filter((name) => name !== 'tollgate').map((name) => results.get(name)!);
  const overshoots = inputs.flatMap((input, index) => {
    const own = tollgate[index];
    const exact = exactCounts.map((list) => list[index]).find((o) => o?.kind === 'ok');
    if (own?.kind !== 'ok' || own.value.exact || exact?.kind !== 'ok' || own.value.tokens < exact.value.tokens * 1.05)
      return [];
    return [
      `${input.name} ${fmtNumber(own.value.tokens)} vs ${fmtNumber(exact.value.tokens)} exact (${fmtNumber(own.value.tokens / exact.value.tokens, 1)}×)`,
    ];
  });
  if (overshoots.length > 0) {
    findings.push(
      `Estimation: where the counting budget ran out the estimate is the byte-length bound, above the exact count: ${overshoots.join('; ')}. ` +
        'Token limits and budgets reserve that much before the call (§3).',
    );
  }
  findings.push(
    `Estimation: a ${chat.turns}-turn chat that resends its history costs ${fmtMs(median(talk.uncachedMs))} of counting without the count cache and ` +
      `${fmtMs(median(talk.cachedMs))} with it (meter()'s default), its last turn ${fmtMs(median(talk.lastTurnUncachedMs))} against ${fmtMs(median(talk.lastTurnCachedMs))} (§3).`,
  );
  return { title: '3. Token estimation', body: [...body, ...conversationBody].join('\n'), targets, findings };
}
