// The config's `guard`, `alerts` and `guardrails` as the gateway's guard takes them (webhook secrets read from the
// environment).
import type { WebhookOptions } from '@tollgate/guard';
import type { GuardrailRules, GuardSetupOptions } from '../guard-setup.js';
import { ConfigError } from './error.js';
import type { GuardConfig, GatewayConfig } from './schema.js';

/** The guard's checks as createGuard (and resolveGuardOptions) take them: a section left out is off. */
export function guardChecks(
  guard: GuardConfig | undefined,
): Pick<GuardSetupOptions, 'spendAnomaly' | 'repeatedRequests' | 'authFailures' | 'abuse'> {
  return {
    spendAnomaly: guard?.spendAnomaly ?? false,
    repeatedRequests: guard?.repeatedRequests ?? false,
    authFailures: guard?.authFailures ?? false,
    abuse: guard?.abuse ?? false,
  };
}

/** The config's webhooks, their secrets read from `env` (as the upstream keys are): a missing one stops the start. */
function webhooksOf(config: GatewayConfig, env: NodeJS.ProcessEnv): WebhookOptions[] {
  const unset: string[] = [];
  const hooks = (config.alerts?.webhooks ?? []).map((hook, i) => {
    let secret: string | undefined;
    if (hook.secretEnv !== undefined) {
      secret = env[hook.secretEnv];
      if (!secret)
        unset.push(`alerts.webhooks[${i}].secretEnv names ${hook.secretEnv}, which is not set in the environment`);
    }
    return { url: hook.url, format: hook.format ?? 'json', ...(secret ? { secret } : {}) };
  });
  if (unset.length > 0) throw new ConfigError(unset);
  return hooks;
}

/**
 * The guard the config asks for: each `guard` section turns its check on; with `alerts` and no `guard`, only its
 * alert stream runs. The Redis URL is the one the stores were opened on (the environment first, then the config).
 */
export function guardOptions(config: GatewayConfig, env: NodeJS.ProcessEnv): GuardSetupOptions {
  const guard = config.guard;
  const redisUrl = env.REDIS_URL || config.redisUrl || config.redis?.cluster?.[0];
  return {
    enabled: guard !== undefined || config.alerts !== undefined,
    ...guardChecks(guard),
    ...(guard?.shedding ? { shedding: guard.shedding } : {}),
    bodyTimeout: guard?.bodyTimeout ?? '10s',
    webhooks: webhooksOf(config, env),
    ...(redisUrl ? { redisUrl } : {}),
  };
}

/** The config's prompt guardrails (checked by promptGuardrails' own rules, resolvePromptGuardrails). */
export function guardrailRules(config: GatewayConfig): GuardrailRules | undefined {
  return config.guardrails;
}
