// Fails the whole run at once, with a fix, when Redis (or redis-server, for the cluster tests), PostgreSQL, Chromium or
// promtool is not there: tests never skip them. `pnpm test` first runs test/setup/machine.sh, which installs or starts
// each where it can.
import { existsSync } from 'node:fs';
import net from 'node:net';
import { delimiter, join } from 'node:path';

/** True when `name` is an executable file in a directory of PATH. */
function onPath(name) {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && existsSync(join(dir, name)));
}

function probe(url, fallbackPort) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect({ host: hostname, port: Number(port || fallbackPort) });
    socket.setTimeout(2000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
}

export default async function globalSetup() {
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const postgresUrl = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const missing = [];
  if (!(await probe(redisUrl, 6379))) {
    missing.push(
      `Redis is not answering at ${redisUrl}. Start it with:\n  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no\nor set REDIS_URL.`,
    );
  }
  if (!(await probe(postgresUrl, 5432))) {
    missing.push(
      `PostgreSQL is not answering at ${postgresUrl}. Start it with:\n  pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\nor set POSTGRES_URL.`,
    );
  }
  // The Redis Cluster tests start their own nodes from redis-server, unless REDIS_CLUSTER_URLS names a cluster.
  if (!process.env.REDIS_CLUSTER_URLS && !onPath('redis-server')) {
    missing.push(
      'redis-server is not on the PATH (the Redis Cluster tests start a cluster of their own). Install it with:\n  apt-get install -y redis-server\nor set REDIS_CLUSTER_URLS to the node URLs of a running cluster.',
    );
  }
  // The dashboard's browser tests drive Debian's Chromium (playwright-core downloads no browser).
  if (!existsSync('/usr/bin/chromium')) {
    missing.push(
      'Chromium is not installed at /usr/bin/chromium. Install it with:\n  apt-get install -y chromium   (sudo apt-get ... when not root; .ci/run does it)',
    );
  }
  // deploy/prometheus's rules are checked and unit-tested with promtool.
  if (!onPath('promtool')) {
    missing.push(
      "promtool is not on the PATH (the alert rules' tests). Install it with:\n  apt-get install -y --no-install-recommends prometheus",
    );
  }
  if (missing.length > 0) throw new Error(`tollgate tests need real services and tools:\n\n${missing.join('\n\n')}`);
}
