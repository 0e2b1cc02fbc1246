// Fails the whole run at once, with a fix, when Redis, PostgreSQL or Chromium is not there: tests never skip them.
import { existsSync } from 'node:fs';
import net from 'node:net';

function probe(url, fallbackPort) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect({ host: hostname, port: Number(port || fallbackPort) });
    socket.setTimeout(2000);
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('timeout', () => { socket.destroy(); resolve(false); });
    socket.once('error', () => resolve(false));
  });
}

export default async function globalSetup() {
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const postgresUrl = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const missing = [];
  if (!(await probe(redisUrl, 6379))) {
    missing.push(`Redis is not answering at ${redisUrl}. Start it with:\n  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no\nor set REDIS_URL.`);
  }
  if (!(await probe(postgresUrl, 5432))) {
    missing.push(`PostgreSQL is not answering at ${postgresUrl}. Start it with:\n  pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\nor set POSTGRES_URL.`);
  }
  // The dashboard's browser tests drive Debian's Chromium (playwright-core downloads no browser).
  if (!existsSync('/usr/bin/chromium')) {
    missing.push('Chromium is not installed at /usr/bin/chromium. Install it with:\n  apt-get install -y chromium   (sudo apt-get ... when not root; .ci/run does it)');
  }
  if (missing.length > 0) throw new Error(`tollgate tests need real services and tools:\n\n${missing.join('\n\n')}`);
}
