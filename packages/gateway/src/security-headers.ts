// The security headers of every response: helmet's, worked out once at start and set as one block per response.
import type { IncomingMessage, ServerResponse } from 'node:http';
import helmet from 'helmet';
import type { HelmetOptions } from 'helmet';

/** One thing helmet does to a response: a header set to `value`, or removed (`value` undefined). */
type SecurityHeaderStep = readonly [name: string, value: string | number | readonly string[] | undefined];

/**
 * What helmet does to a response, in its order, recorded on a stand-in response. With the options
 * the proxy uses none of its headers depends on the request, so the record holds for every one.
 */
export function helmetHeaderSteps(options?: Readonly<HelmetOptions>): SecurityHeaderStep[] {
  const steps: SecurityHeaderStep[] = [];
  const standIn = {
    setHeader(name: string, value: string | number | readonly string[]) {
      steps.push([name, value]);
      return standIn;
    },
    removeHeader(name: string) {
      steps.push([name, undefined]);
    },
  };
  let outcome: { error: unknown } | undefined;
  helmet(options)(
    {} as IncomingMessage,
    standIn as unknown as ServerResponse,
    (error?: unknown) => (outcome = { error }),
  );
  if (outcome === undefined || outcome.error !== undefined) {
    throw new Error(
      `helmet did not work out its headers at start${outcome?.error instanceof Error ? `: ${outcome.error.message}` : ''}`,
    );
  }
  return steps;
}

/** Sets on a response the headers helmet sets (and removes) with `options`, without running helmet per response. */
export function securityHeaders(options?: Readonly<HelmetOptions>): (res: ServerResponse) => void {
  const steps = helmetHeaderSteps(options);
  return function setSecurityHeaders(res) {
    for (const [name, value] of steps) {
      if (value === undefined) res.removeHeader(name);
      else res.setHeader(name, value);
    }
  };
}
