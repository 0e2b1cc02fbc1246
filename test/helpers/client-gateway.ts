// A gateway for the third-party client tests (test/e2e-clients-*): the mock provider and a scripted upstream behind it,
// on memory or Redis stores, with a key that is answered, one whose budget cannot pay, and one limited to a request.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { UsageRecord } from '@tollgate/core';
import {
  memoryAndRedisStores,
  newApiKey,
  readUsageLog,
  sha256Hex,
  startMockUpstream,
  startProxy,
  waitFor,
} from './proxy.js';
import type { OwnedStores, RunningMock, RunningProxy } from './proxy.js';
import { startSwitchableUpstream } from './routing-upstreams.js';
import type { Answer, SwitchableUpstream } from './routing-upstreams.js';

/** The scripted upstream's models: `scripted-chat` (OpenAI's APIs) and `llama-3.1-8b` (an openai-compatible server). */
export const SCRIPTED_MODEL = 'scripted-chat';
export const COMPATIBLE_MODEL = 'llama-3.1-8b';

export interface ClientGateway {
  url: string;
  proxy: RunningProxy;
  /** The mock provider as the upstream of the catalogue's OpenAI, Anthropic (unless scripted) and Google models. */
  mock: RunningMock;
  /** The upstream of SCRIPTED_MODEL, COMPATIBLE_MODEL and, when asked, Anthropic's models: its answer is each test's. */
  scripted: SwitchableUpstream;
  /** `answered`: a pro key; `broke`: a tenant whose budget pays for nothing; `limited`: one request a minute. */
  keys: { answered: string; broke: string; limited: string };
  /** The next `count` usage records of `keyId` (after those returned before), once written (at each response's close). */
  newRecords(keyId: string, count?: number): Promise<UsageRecord[]>;
  close(): Promise<void>;
}

/** `describe.each` rows: the store kinds every client runs on. */
export const clientStoreKinds = (name: string) => memoryAndRedisStores(`clients-${name}`);

const unanswered: Answer = (_request, res) => res.writeHead(500).end();

export interface ClientGatewayOptions {
  /**
   * The catalogue's Anthropic models answered by the scripted upstream instead of the mock (a client whose model is
   * its own choice, as Claude Code's default is).
   * @default false
   */
  scriptedAnthropic?: boolean;
}

/** The gateway on `owned`'s stores, its upstreams on ports of their own. */
export async function startClientGateway(
  owned: OwnedStores,
  options: ClientGatewayOptions = {},
): Promise<ClientGateway> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-clients-'));
  const usageLog = path.join(dir, 'usage.jsonl');
  const mock = await startMockUpstream();
  const scripted = await startSwitchableUpstream(unanswered);
  const keys = { answered: newApiKey(), broke: newApiKey(), limited: newApiKey() };
  const apiKey = `upstream-${newApiKey()}`;
  const returned = new Map<string, number>();
  const proxy = await startProxy(
    {
      usageLog,
      upstreams: {
        openai: { baseUrl: `${mock.url}/v1`, apiKey },
        anthropic: { baseUrl: options.scriptedAnthropic ? scripted.url : mock.url, apiKey },
        google: { baseUrl: `${mock.url}/v1beta`, apiKey },
        scripted: { baseUrl: `${scripted.url}/v1`, apiKey, api: 'openai' },
        vllm: { baseUrl: `${scripted.url}/v1`, apiKey, api: 'openai-compatible' },
      },
      models: {
        [SCRIPTED_MODEL]: { provider: 'scripted', inputPerMTok: 1, outputPerMTok: 2 },
        [COMPATIBLE_MODEL]: { provider: 'vllm', inputPerMTok: 0.1, outputPerMTok: 0.2 },
      },
      tiers: { pro: { models: ['*'] }, single: { models: ['*'], requestsPerMinute: 1 } },
      tenants: {
        acme: { tier: 'pro', budget: { usd: 100, period: 'day' } },
        broke: { tier: 'pro', budget: { usd: 0.000001, period: 'day' } },
        small: { tier: 'single' },
      },
      keys: [
        { id: 'answered', sha256: sha256Hex(keys.answered), tenant: 'acme' },
        { id: 'broke', sha256: sha256Hex(keys.broke), tenant: 'broke' },
        { id: 'limited', sha256: sha256Hex(keys.limited), tenant: 'small' },
      ],
    },
    { stores: owned.stores },
  );
  return {
    url: proxy.url,
    proxy,
    mock,
    scripted,
    keys,
    async newRecords(keyId, count = 1) {
      const seen = returned.get(keyId) ?? 0;
      const records = await waitFor(async () => {
        await proxy.app.flushUsage();
        const ofKey = readUsageLog(usageLog).filter((entry) => entry.keyId === keyId);
        return ofKey.length >= seen + count ? ofKey.slice(seen) : undefined;
      }, `${count} usage records of ${keyId}`);
      returned.set(keyId, seen + records.length);
      return records;
    },
    async close() {
      await proxy.close();
      await mock.close();
      await scripted.close();
      await owned.release();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
