import { runGuardDetectionBenchmark } from './guard-detection.js';
const r = await runGuardDetectionBenchmark({ quick: process.env.QUICK === '1', runId: 'x', redisPrefix: 'x', log: () => undefined });
console.log(`RF=${process.env.RF} DRIFT=${process.env.DRIFT} CAP=${process.env.CAP} SEED=${process.env.SEED}`);
for (const t of r.targets) console.log('  ', t.holds ? 'HOLDS' : 'FAILS', t.figures);
