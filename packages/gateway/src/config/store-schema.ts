// The config's stores and log: Redis (a cluster, blocks), what limits do while Redis is out, the access log.
import { z } from 'zod';
import type { OutagePolicy } from '@tollgate/core/store-contracts';
import type { StoreOutageConfig } from '../outage-setup.js';
import { choice, duration, fields, fraction, nonEmptyString, trueOrFalse, url } from './rules.js';

/** The levels of the proxy's log, most severe first; `silent` writes nothing. */
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const CLUSTER = 'must be a non-empty array of node URLs ("redis://host:port")';
export const redisSchema = fields({
  cluster: z
    .array(url(['redis:', 'rediss:']), CLUSTER)
    .min(1, CLUSTER)
    .optional()
    .describe('URLs of some nodes of a Redis Cluster (`redis://host:port`); the stores spread over its shards.'),
  blocks: z
    .union(
      [
        trueOrFalse,
        fields({
          share: fraction('must be a number above 0 and at most 1 (a share of each limit and budget)')
            .optional()
            .describe(
              'The most a block holds, as a share of its limit (blocks are sized by demand: twice the requests a process saw within maxAge). Default: 0.05.',
            ),
          size: choice(['demand', 'share'], 'must be "demand" or "share"')
            .optional()
            .describe(
              '"demand": a block holds twice the requests the process saw within maxAge, at most share of the limit; "share": always share of the limit. Default: "demand".',
            ),
          maxAge: duration
            .optional()
            .describe('How long a block hands out before what it did not hand out goes back. Default: "10s".'),
        }),
      ],
      'must be true, false or { "share": 0.05, "size": "demand", "maxAge": "10s" }',
    )
    .optional()
    .describe(
      'Hot limits and budgets taken from Redis a block at a time and handed out in-process (blockStores): far fewer Redis calls. ' +
        'Never past a limit; a caller may be refused early by what other processes hold unused (at most share × limit each) for at most maxAge. Default: true.',
    ),
}).describe(
  'Redis options: a Redis Cluster instead of one server (`redisUrl`): `{ "cluster": ["redis://host:port", ...] }`; `blocks`.',
);

export const logSchema = fields({
  level: choice(LOG_LEVELS, `must be one of ${LOG_LEVELS.map((level) => `"${level}"`).join(', ')}`)
    .optional()
    .describe(
      'Lines below this level are not written (access lines are `info`, failures `error`, health checks `debug`). Default: "info".',
    ),
  destination: nonEmptyString()
    .optional()
    .describe('`stdout`, `stderr`, or the path of a file the lines are appended to. Default: "stderr".'),
}).describe('The access and error log (JSON lines, pino). Default: { "level": "info", "destination": "stderr" }.');

const OUTAGE_POLICY = 'must be "lease", "failOpen" or "failClosed"';
const outagePolicy = choice(
  ['lease', 'failOpen', 'failClosed'] as const satisfies readonly OutagePolicy[],
  OUTAGE_POLICY,
);
const DEFAULT_SLICE = 0.02;
export const storeOutageSchema = z
  .union(
    [
      outagePolicy.transform((policy): StoreOutageConfig => ({
        requests: policy,
        tokens: policy,
        budget: policy,
        slice: DEFAULT_SLICE,
      })),
      fields({
        policy: outagePolicy.optional().describe('The policy of every layer that names none. Default: "failClosed".'),
        requests: outagePolicy.optional().describe('Request limits (tieredRateLimit).'),
        tokens: outagePolicy.optional().describe('Token limits (tokenRateLimit).'),
        budget: outagePolicy.optional().describe('Budgets (budgetGuard).'),
        slice: fraction('must be a number above 0 and at most 1 (a share of each limit and budget)')
          .optional()
          .describe(
            `The share of each limit and budget one process may grant on its own while Redis is out. Default: ${DEFAULT_SLICE}.`,
          ),
      }).transform((outage): StoreOutageConfig => {
        const all = outage.policy ?? 'failClosed';
        return {
          requests: outage.requests ?? all,
          tokens: outage.tokens ?? all,
          budget: outage.budget ?? all,
          slice: outage.slice ?? DEFAULT_SLICE,
        };
      }),
    ],
    'must be "lease", "failOpen", "failClosed" or an object',
  )
  .describe(
    'What request limits, token limits and budgets do while Redis is out: `"lease"`, `"failOpen"`, `"failClosed"`, or ' +
      '`{ "policy": "lease", "budget": "failClosed", "slice": 0.02 }` (a layer\'s own policy where given). Default: failClosed everywhere.',
  );
