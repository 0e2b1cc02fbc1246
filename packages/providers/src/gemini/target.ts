// Gemini's path names the model and the method (`models/{model}:{action}`): the one reading of it, for the gateway's
// routes and the mock.

/** `{model}:{action}` split at its last colon, or undefined when the action is none of `methods`. */
export function splitGeminiTarget(
  target: unknown,
  methods: readonly string[],
): { model: string; action: string } | undefined {
  if (typeof target !== 'string') return undefined;
  const colon = target.lastIndexOf(':');
  const action = target.slice(colon + 1);
  if (colon < 0 || !methods.includes(action)) return undefined;
  return { model: target.slice(0, colon), action };
}
