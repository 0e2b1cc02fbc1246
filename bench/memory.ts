// Benchmark 5: heap over a million requests through the full chain on the in-memory stores, with rotating keys.
import { startServer } from './lib/child.js';
import type { DriveOptions, HeapCheckpoint } from './lib/server.js';
import type { BenchContext, SectionResult, TargetVerdict } from './lib/section.js';
import { fmtBytes, fmtNumber, table } from './lib/stats.js';

interface DriveResult {
  name: string;
  checkpoints: HeapCheckpoint[];
  statuses: Record<string, number>;
}

/**
 * Bytes of heap (after GC) gained per request over the second half of the run. State that is
 * bounded (windows, budgets of 1,000 keys) fills up in the first minute and then stays; a leak
 * keeps growing in the second half as in the first.
 */
function growthPerRequest(checkpoints: HeapCheckpoint[]): number {
  const middle = checkpoints[Math.floor((checkpoints.length - 1) / 2)];
  const last = checkpoints.at(-1);
  if (!middle || !last || last.requests === middle.requests) return Number.NaN;
  return (last.heapUsed - middle.heapUsed) / (last.requests - middle.requests);
}

function middleOf(checkpoints: HeapCheckpoint[]): HeapCheckpoint {
  return checkpoints[Math.floor((checkpoints.length - 1) / 2)]!;
}

async function driveCase(
  name: string,
  app: string,
  options: Record<string, unknown>,
  drive: DriveOptions,
  log: (m: string) => void,
): Promise<DriveResult> {
  const server = await startServer({ app, options }, { exposeGc: true });
  try {
    log(`memory: driving ${name} (${fmtNumber(drive.requests)} requests)`);
    const result = await server.call<{ checkpoints: HeapCheckpoint[]; statuses: Record<string, number> }>('drive', {
      drive,
    });
    return { name, ...result };
  } finally {
    await server.close();
  }
}

export async function runMemoryBenchmark(context: BenchContext): Promise<SectionResult> {
  const requests = context.quick ? 100_000 : 1_000_000;
  const keys = 1000;
  // A cap keeps the whole `pnpm bench` inside its slot on a slow machine; the report says when it cut the run short.
  const maxSeconds = context.quick ? undefined : 420;
  const drive: DriveOptions = {
    requests,
    concurrency: 64,
    keys,
    checkpoints: context.quick ? 10 : 20,
    ...(maxSeconds ? { maxSeconds } : {}),
  };
  // Bare Express is only the reference for what the harness itself holds: a tenth of the count is enough.
  const referenceDrive: DriveOptions = { ...drive, requests: 50_000, checkpoints: 10 };
  const results: DriveResult[] = [];
  const missing: string[] = [];
  for (const [name, app, options, driveOptions] of [
    ['bare Express (reference)', 'bare', {}, referenceDrive],
    ['tollgate full chain (memory)', 'tollgate-chain', { store: 'memory', keys }, drive],
  ] as const) {
    try {
      results.push(await driveCase(name, app, options, driveOptions, context.log));
    } catch (error) {
      missing.push(`${name}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  const lines = [
    `${fmtNumber(requests)} requests through the chain (bare Express, the reference for what the harness itself holds: ${fmtNumber(referenceDrive.requests)}), driven in-process (Node's own IncomingMessage/ServerResponse over a socket that discards writes, ` +
      `64 in flight, 'close' emitted after 'finish' as Node's server does) so a million requests fit in the run; API keys rotate over ${fmtNumber(keys)} keys. ` +
      'The heap is measured after two full GCs (--expose-gc) at each checkpoint. Growth per request compares the last checkpoint with the middle one: ' +
      'bounded state (1-minute windows and budgets of 1,000 keys, reservations until settled) fills up in the first minute and then stays, a leak keeps growing.',
    '',
  ];
  for (const r of results) {
    const non200 = Object.entries(r.statuses).filter(([code]) => code !== '200');
    lines.push(
      `**${r.name}**: ${fmtNumber(r.checkpoints.at(-1)!.requests / r.checkpoints.at(-1)!.seconds)} req/s in-process, ` +
        `statuses ${Object.entries(r.statuses)
          .map(([code, n]) => `${code}×${fmtNumber(n)}`)
          .join(', ')}${non200.length > 0 ? ' (not all 200: see the chain setup)' : ''}; ` +
        `heap growth ${fmtNumber(growthPerRequest(r.checkpoints), 2)} bytes/request over the second half.`,
      '',
      table(
        ['requests', 'heap used after GC', 'rss', 'seconds'],
        r.checkpoints.map((c) => [fmtNumber(c.requests), fmtBytes(c.heapUsed), fmtBytes(c.rss), c.seconds.toFixed(1)]),
      ),
      '',
    );
  }
  if (missing.length > 0) lines.push('Not measured:', ...missing.map((m) => `- ${m}`));
  const chain = results.find((r) => r.name.startsWith('tollgate'));
  const targets: TargetVerdict[] = [];
  const reached = chain?.checkpoints.at(-1)?.requests ?? 0;
  if (chain && reached < requests) {
    lines.push(
      '',
      `**The chain run was stopped by the ${maxSeconds} s cap after ${fmtNumber(reached)} of ${fmtNumber(requests)} requests**: the verdict covers those.`,
    );
  }
  if (chain) {
    const perRequest = growthPerRequest(chain.checkpoints);
    const warm = middleOf(chain.checkpoints);
    const last = chain.checkpoints.at(-1)!;
    const first = chain.checkpoints[1]!;
    const allOk = Object.keys(chain.statuses).every((code) => code === '200');
    targets.push({
      target: `Memory flat over ${fmtNumber(requests)} requests on the in-memory stores (under 4 bytes of heap per request over the second half)${reached < requests ? ` — only ${fmtNumber(reached)} reached` : ''}`,
      holds: allOk ? perRequest < 4 : undefined,
      figures:
        `heap after GC ${fmtBytes(first.heapUsed)} at ${fmtNumber(first.requests)}, ${fmtBytes(warm.heapUsed)} at ${fmtNumber(warm.requests)}, ` +
        `${fmtBytes(last.heapUsed)} at ${fmtNumber(last.requests)} (${fmtNumber(perRequest, 2)} B/request over the second half)${allOk ? '' : '; not every answer was 200'}`,
    });
  } else {
    targets.push({
      target: 'Memory flat over a million requests on the in-memory stores',
      holds: undefined,
      figures: 'chain not available',
    });
  }
  return { title: '5. Memory over a million requests (in-memory stores)', body: lines.join('\n'), targets };
}
