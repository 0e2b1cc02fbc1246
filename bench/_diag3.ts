import { MemoryGuardStore } from '@tollgate/guard';
import { replayTraffic } from './guard-detection.js';
const target = process.argv[2] ?? 'key:k18';
const from = Number(process.argv[3] ?? 0), to = Number(process.argv[4] ?? Infinity);
const original = MemoryGuardStore.prototype.observeNow;
MemoryGuardStore.prototype.observeNow = function (obs, params) {
  const out = original.call(this, obs, params);
  obs.forEach((o, i) => {
    if (o.subject !== target) return;
    void this.inspect(o.subject).then((st) => {
      if (!st || st.bucket < from || st.bucket > to) return;
      const b = st.baseline; const W = 5;
      const fmt = (m: number) => `cur ${st.current[m]!.toFixed(0)} y ${Math.sqrt(st.current[m]!).toFixed(2)} fm ${b[W*m]!.toFixed(2)} fsd ${Math.sqrt(b[W*m+1]!).toFixed(2)} sm ${b[W*m+2]!.toFixed(2)} ssd ${Math.sqrt(b[W*m+3]!).toFixed(2)} cus ${b[W*m+4]!.toFixed(2)}`;
      console.log(st.bucket, 'seen', st.seen, 'quiet', st.quietUntil, 'REQ', fmt(2), '| SPEND', fmt(0), out[i] ? `FOUND ${out[i]!.metric} z ${out[i]!.z.toFixed(2)} score ${out[i]!.score.toFixed(2)}` : '');
    });
  });
  return out;
};
const r = await replayTraffic({ keys: 200, days: 3, seed: 17 });
const k = r.allKeys.find((k) => `key:${k.id}` === target)!;
console.log(k.injection && { start: k.injection.start / 60000, end: k.injection.end / 60000, kind: k.injection.kind });
