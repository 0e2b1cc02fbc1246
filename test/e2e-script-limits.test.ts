// A tokens-per-minute limit admits prompts written without spaces by their real size, as it does English of the same length.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { startCapIgnoringUpstream } from './helpers/cap-ignoring-upstream.js';
import type { FakeUpstream } from './helpers/cap-ignoring-upstream.js';
import { newApiKey, sha256Hex, startProxy } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

const CHINESE =
  '人工智能正在改变我们的生活方式。从智能手机到自动驾驶汽车，机器学习算法无处不在。研究人员表示，未来十年内，' +
  '这项技术将在医疗、教育和金融等领域发挥更大的作用。然而，专家们也提醒，必须重视数据隐私和算法公平性的问题。';
const JAPANESE =
  '東京の天気は今日も晴れです。週末には多くの人々が公園に集まり、桜の花を楽しみました。新しい駅の建設工事は来年の春に' +
  '完成する予定で、地元の商店街も期待を寄せています。しかし、交通渋滞の問題はまだ解決されていません。';
const ENGLISH = 'The committee met on Tuesday to review the quarterly results, and revenue grew by twelve percent. ';
/** 2,400 characters of each: about 1,300 o200k tokens of Chinese, 1,900 of Japanese (7,200 UTF-8 bytes each), 500 of English. */
const prompt = (text: string) => text.repeat(Math.ceil(2_400 / text.length)).slice(0, 2_400);

let fake: FakeUpstream;
let proxy: RunningProxy;
const keys = { chinese: newApiKey(), japanese: newApiKey(), english: newApiKey(), claude: newApiKey() };

beforeAll(async () => {
  // Slow enough that three calls are in flight at once: the limit holds their estimates, not what they were billed.
  fake = await startCapIgnoringUpstream({ honourCap: true, outputTokens: 20, delayMs: 400 });
  proxy = await startProxy({
    upstreams: { openai: { baseUrl: `${fake.url}/v1` }, anthropic: { baseUrl: fake.url } },
    // Three calls of up to 2,100 tokens (Japanese is 1,900) fit in 7,000; one byte bound (7,300) would not fit alone.
    tiers: { pro: { tokensPerMinute: 7_000, models: ['*'] } },
    tenants: Object.fromEntries(Object.keys(keys).map((name) => [name, { tier: 'pro' }])),
    keys: Object.entries(keys).map(([name, key]) => ({ id: `${name}-key`, sha256: sha256Hex(key), tenant: name })),
  });
});

afterAll(async () => {
  await proxy?.close();
  await fake?.close();
});

async function threeAtOnce(key: string, route: string, body: Record<string, unknown>): Promise<number[]> {
  const send = () =>
    fetch(`${proxy.url}${route}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    }).then(async (response) => {
      await response.arrayBuffer();
      return response.status;
    });
  return Promise.all([send(), send(), send()]);
}

describe('a tokens-per-minute limit and prompts of every script', () => {
  it.each([
    ['Chinese', 'chinese', CHINESE],
    ['Japanese', 'japanese', JAPANESE],
    ['English', 'english', ENGLISH],
  ] as const)('admits 3 of 3 concurrent 2,400-character %s prompts to gpt-4o-mini', async (_label, tenant, text) => {
    const statuses = await threeAtOnce(keys[tenant], '/v1/chat/completions', {
      model: 'gpt-4o-mini',
      max_tokens: 100,
      messages: [{ role: 'user', content: prompt(text) }],
    });
    expect(statuses).toEqual([200, 200, 200]);
  });

  it('admits 3 of 3 concurrent 2,400-character Chinese prompts to Claude (approximated, not bounded by bytes)', async () => {
    const statuses = await threeAtOnce(keys.claude, '/v1/messages', {
      model: 'claude-haiku-4-5',
      max_tokens: 100,
      messages: [{ role: 'user', content: prompt(CHINESE) }],
    });
    expect(statuses).toEqual([200, 200, 200]);
  });
});
