import { replayTraffic } from './guard-detection.js';
const r = await replayTraffic({ keys: 200, days: 3, seed: Number(process.argv[2] ?? 17) });
const byId = new Map(r.allKeys.map((k) => [k.id, k]));
const fps = r.findings.filter((f) => {
  const [kind, id] = f.subject.split(':');
  if (kind !== 'key') return false;
  const inj = byId.get(id!)!.injection;
  return !(inj && f.at > inj.start && f.at <= inj.end + 900_000);
});
const counts = new Map<string, number>();
for (const f of fps) { const k = byId.get(f.subject.split(':')[1]!)!; const c = `${k.cls}/${f.metric}/${k.rate < 2 ? 'sparse' : k.rate < 10 ? 'mid' : 'dense'}`; counts.set(c, (counts.get(c) ?? 0) + 1); }
console.log([...counts].sort((a, b) => b[1] - a[1]));
for (const f of fps.slice(0, 25)) { const k = byId.get(f.subject.split(':')[1]!)!; console.log(f.subject, k.cls, k.rate.toFixed(2), f.metric, 'z', f.z.toFixed(1), 'x', f.value.toFixed(2), 'mean', f.mean.toFixed(2), 'sd', f.sd.toFixed(2), 'h', ((f.at % 86400000) / 3600000).toFixed(1), 'opens', k.opensAt.toFixed(1)); }
const missed = r.injected.filter((k) => k.injection!.kind === '10x' && k.injection!.detectedAt === undefined);
for (const k of missed.slice(0, 15)) console.log('missed10x', k.id, k.cls, k.rate.toFixed(2), (k.rate * k.cost).toFixed(4), 'h', ((k.injection!.start % 86400000) / 3600000).toFixed(1), 'opens', k.opensAt.toFixed(1), k.addresses.length);
const byDay = new Map<number, number>();
for (const f of fps) { const d = Math.floor(f.at / 86400000 * 4) / 4; byDay.set(d, (byDay.get(d) ?? 0) + 1); }
console.log('fp by quarter-day', [...byDay].sort((a, b) => a[0] - b[0]));
const late = fps.filter((f) => f.at > 86400000);
for (const f of late.slice(0, 30)) { const k = byId.get(f.subject.split(':')[1]!)!; console.log('late', f.subject, k.cls, k.rate.toFixed(2), f.metric, 'z', f.z.toFixed(1), 'x', f.value.toFixed(2), 'mean', f.mean.toFixed(2), 'sd', f.sd.toFixed(2), 'h', ((f.at % 86400000) / 3600000).toFixed(1), 'opens', k.opensAt.toFixed(1)); }
