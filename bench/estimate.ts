// Benchmark 3: how long tollgate's estimate takes and how long it stalls the event loop, on prompts from 1 KB to
// pathological megabytes, and what the count cache saves a chat that resends its history. The exact BPE libraries'
// speed on the same sizes is packages/providers/bench/tokenizers.ts; the estimate against exact counts, estimate-scripts.
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { askBenchChild, forkBench } from './lib/child.js';
import type { ConversationMeasurement, ConversationRequest, InputMeasurement } from './lib/estimate-child.js';
import { estimationInputs } from './lib/inputs.js';
import type { BenchContext, SectionResult, TargetVerdict } from './lib/section.js';
import { fmtMs, fmtNumber, median, table } from './lib/stats.js';

const ENTRY = fileURLToPath(new URL('./lib/estimate-child.ts', import.meta.url));
const LIMIT_MS = 10_000;
const STALL_TARGET_MS = 50;

type Outcome = { ok: true; value: InputMeasurement } | { ok: false; why: string };

/** One input in the child, which is replaced when the input runs past LIMIT_MS or fails. */
function measureInput(child: ChildProcess, input: number, quick: boolean): Promise<Outcome> {
  return new Promise<Outcome>((resolve) => {
    const timer = setTimeout(() => resolve({ ok: false, why: `> ${LIMIT_MS / 1000} s (stopped)` }), LIMIT_MS);
    child.once('message', (message: { ok: boolean; value?: InputMeasurement; error?: string }) => {
      clearTimeout(timer);
      resolve(message.ok ? { ok: true, value: message.value! } : { ok: false, why: message.error ?? 'failed' });
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ ok: false, why: `child exited (${code ?? signal})` });
    });
    child.send({ type: 'run', input, quick });
  });
}

export async function runEstimationBenchmark(context: BenchContext): Promise<SectionResult> {
  const inputs = estimationInputs(context.quick);
  const outcomes: Outcome[] = [];
  let child: ChildProcess | undefined;
  for (const [index, input] of inputs.entries()) {
    child ??= forkBench(ENTRY);
    const outcome = await measureInput(child, index, context.quick);
    child.removeAllListeners('message');
    child.removeAllListeners('exit');
    if (!outcome.ok) {
      child.kill('SIGKILL');
      child = undefined;
    }
    outcomes.push(outcome);
    context.log(`estimate: ${input.name}: ${outcome.ok ? fmtMs(median(outcome.value.times)) : outcome.why}`);
  }
  child?.kill();
  const rows = inputs.map((input, index) => {
    const outcome = outcomes[index]!;
    if (!outcome.ok) return [input.name, outcome.why, 'n/a'];
    const { times, tokens, exact, maxStallMs } = outcome.value;
    return [
      input.name,
      `${fmtMs(median(times))} (${fmtNumber(tokens)} tok${exact ? '' : ', bounded'})`,
      fmtMs(maxStallMs),
    ];
  });
  const chat: ConversationRequest = {
    conversations: context.quick ? 2 : 6,
    turns: 20,
    systemChars: 4_000,
    userChars: 400,
    replyChars: 800,
  };
  const talk = await askBenchChild<ConversationMeasurement>(ENTRY, { type: 'conversations', ...chat }, 'estimate');
  const calls = chat.conversations * chat.turns;
  const chatRow = (name: string, all: number[], last: number[], sliced: number) => [
    name,
    fmtMs(median(all)),
    fmtMs(median(last)),
    `${sliced} of ${calls}`,
  ];
  const body = [
    '`estimateInputTokensAsync` (what meter() runs: 4 ms slices, a 250 ms counting budget) on a chat request holding ' +
      `each text, median per count (runs: ${inputs.map((i) => `${i.name} ${i.runs}`).join(', ')}), each run a fresh text; ` +
      '"bounded": the budget ran out and the rest was counted as its UTF-8 bytes. The longest stall is the longest time ' +
      'the event loop could not turn (1 ms probe and monitorEventLoopDelay).',
    '',
    table(['input', 'tollgate estimate', 'longest stall'], rows),
    '',
    `**A conversation resent each turn.** ${chat.conversations} chats of ${chat.turns} turns, the same ` +
      `${fmtNumber(chat.systemChars)}-character system prompt, ${fmtNumber(chat.userChars)}-character questions and ` +
      `${fmtNumber(chat.replyChars)}-character answers (${fmtNumber(talk.lastTurnTokens)} input tokens at the last turn), ` +
      'every turn estimated as meter() does, without and with a count cache kept across the chats: CPU time, median over the chats.',
    '',
    table(
      ['estimates', 'all turns of a chat', 'its last turn', 'turns counted in slices'],
      [
        chatRow('no count cache', talk.uncachedMs, talk.lastTurnUncachedMs, talk.slicedUncached),
        chatRow('the count cache (meter() default)', talk.cachedMs, talk.lastTurnCachedMs, talk.slicedCached),
      ],
    ),
  ].join('\n');
  const stalls = outcomes.map((o) => (o.ok ? o.value.maxStallMs : Number.POSITIVE_INFINITY));
  const worst = Math.max(...stalls);
  const targets: TargetVerdict[] = [
    {
      target: `No event-loop stall over ${STALL_TARGET_MS} ms on any estimation input`,
      holds: worst <= STALL_TARGET_MS,
      figures: `longest stall ${Number.isFinite(worst) ? fmtMs(worst) : `> ${LIMIT_MS / 1000} s`} (${inputs[stalls.indexOf(worst)]?.name ?? ''})`,
    },
  ];
  const findings = [
    `Estimation: a ${chat.turns}-turn chat that resends its history costs ${fmtMs(median(talk.uncachedMs))} of counting ` +
      `without the count cache and ${fmtMs(median(talk.cachedMs))} with it (meter()'s default) (§3).`,
  ];
  return { title: '3. Token estimation', body, targets, findings };
}
