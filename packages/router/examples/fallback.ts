// packages/router/examples/fallback.ts: a model group that falls back to its second target when the first fails, and a class alias that picks the cheapest.
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createPricing } from '@tollgate/core';
import { createModelRouter, isRetryableStatus } from '@tollgate/router';
import type { ResolvedTarget } from '@tollgate/router';

// Two fake upstreams on ephemeral ports: "openai" is down (500), "anthropic" answers.
async function fakeUpstream(status: number): Promise<{ url: string; server: http.Server }> {
  const server = http.createServer((req, res) => {
    req.resume();
    res
      .writeHead(status, { 'content-type': 'application/json' })
      .end(JSON.stringify(status === 200 ? { ok: true } : { error: 'down' }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}
const upstreams = {
  openai: await fakeUpstream(500),
  anthropic: await fakeUpstream(200),
  azure: await fakeUpstream(200),
};

const router = createModelRouter({
  pricing: createPricing(), // every target must be priced; `cheapest` compares them
  modelGroups: {
    smart: {
      strategy: 'fallback',
      targets: [
        { upstream: 'openai', model: 'gpt-4o' },
        { upstream: 'anthropic', model: 'claude-sonnet-4-5' },
      ],
    },
    quick: {
      strategy: 'cheapest',
      targets: [
        { upstream: 'openai', model: 'gpt-4o' },
        { upstream: 'azure', model: 'gpt-4o-mini' },
      ],
    },
  },
  requestClasses: {
    auto: {
      rules: [
        { tools: true, group: 'smart' },
        { minInputTokens: 4000, group: 'smart' },
      ],
      default: 'quick',
    },
  },
  retry: { attempts: 2, baseDelayMs: 10, maxDelayMs: 100 },
  circuitBreaker: { failureThreshold: 5, windowMs: 30000, cooldownMs: 30000 },
  onEvent: (event) => console.log(`event: ${event.type} ${event.target} (${event.reason})`), // skipped targets, retries, failed tries
});

/** One try of a target: a real HTTP call; 5xx, 429 and network errors are worth another try. */
async function send(target: ResolvedTarget) {
  const started = Date.now();
  try {
    const answer = await fetch(`${upstreams[target.upstream as keyof typeof upstreams].url}/${target.model}`, {
      method: 'POST',
    });
    await answer.arrayBuffer();
    if (isRetryableStatus(answer.status)) {
      return {
        kind: 'retryable' as const,
        reason: `status ${answer.status}`,
        deliver: () => console.log(`failed with ${answer.status}`),
      };
    }
    console.log(`answered by ${target.id} (${answer.status})`);
    return { kind: 'answered' as const, firstByteMs: Date.now() - started };
  } catch (error) {
    return { kind: 'retryable' as const, reason: (error as Error).message, deliver: () => console.log('unreachable') };
  }
}

for (const request of [
  { model: 'smart', inputTokens: 900, tools: false, images: false },
  { model: 'auto', inputTokens: 900, tools: false, images: false },
]) {
  const plan = router.plan(request);
  if (!plan) throw new Error(`${request.model} is not a routed model`);
  console.log(
    `${request.model}: group ${plan.group.name}, targets ${plan.targets.map((target) => target.id).join(', ')}`,
  );
  await router.run(plan, {
    prepare: () => undefined, // or why the target cannot take the request (skipped, logged)
    send, // resolves { kind: 'answered' | 'retryable' | 'failed', ... }
    fail: (failure) => console.log(`no target answered: ${failure.status} ${failure.message}`),
    gone: () => false, // true once the client left: no try follows
  });
}
for (const { server } of Object.values(upstreams)) server.close();
