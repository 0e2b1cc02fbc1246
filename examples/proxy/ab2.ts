import express from 'express';
import { pino } from 'pino';
import { pinoHttp } from 'pino-http';
import { inject } from '../../bench/lib/inject.js';
function make(mode: string, i: number) {
  const app = express();
  const redact = mode.includes('redact') ? { redact: { paths: ['req.headers.authorization', 'req.headers["x-api-key"]', 'req.headers["x-goog-api-key"]', 'req.headers.cookie'], censor: '[redacted]' } } : {};
  const dest = pino.destination({ dest: `/tmp/ab2-${i}.log`, sync: true, minLength: 4096 });
  const logger = pino({ level: 'info', ...redact }, dest);
  if (mode !== 'none') {
    const start = pinoHttp({ logger, autoLogging: false, wrapSerializers: false, serializers: { request: (r: any) => ({ method: r.method, path: r.url }) }, customAttributeKeys: { req: 'request' } });
    const handle = (app as any).handle.bind(app);
    (app as any).handle = function (req: any, res: any, next: any) {
      const t = Date.now();
      start(req, res);
      res.on('close', () => { if (mode.includes('noline')) return; res.log.info({ requestId: 'a5c1e9c4-1f1e-4f0e-9b1e-1234567890ab', status: res.statusCode, latencyMs: Date.now() - t, tenant: 'acme', keyId: 'k', feature: 'f', model: 'gpt-4o-mini', stream: false, provider: 'openai' }, 'request completed'); });
      return handle(req, res, next);
    };
  }
  app.post('/x', (req, res) => { res.json({ ok: true }); });
  return app;
}
const modes = process.argv[2]!.split(',');
const apps = modes.map(make);
const body = Buffer.from('{}');
async function run(app: any, n: number) { for (let i = 0; i < n; i++) { if (i % 8 === 0) await new Promise((r) => setImmediate(r)); await inject(app, { method: 'POST', url: '/x', headers: { 'content-type': 'application/json' }, body }); } }
for (const a of apps) await run(a, 20000);
const S: number[][] = modes.map(() => []);
for (let r = 0; r < 60; r++) for (let k = 0; k < apps.length; k++) { const i = (k + r) % apps.length; const c = process.cpuUsage(); await run(apps[i], 2000); const u = process.cpuUsage(c); S[i]!.push((u.user + u.system) / 2000); }
const med = (a: number[]) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]!; };
modes.forEach((m, i) => console.log(m.padEnd(18), med(S[i]!).toFixed(1), 'Δ', med(S[i]!.map((v, r) => v - S[0]![r]!)).toFixed(2)));
process.exit(0);
