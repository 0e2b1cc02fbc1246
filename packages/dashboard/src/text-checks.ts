// Checks on text from a request that is echoed back or used as a place to go.

/** True when the text holds a control character (a line break in a header, a NUL in a name). */
export function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) < 0x20 || text.charCodeAt(i) === 0x7f) return true;
  return false;
}

/**
 * `value` when it is a path of this dashboard (under `base`), else undefined: a redirect to it can
 * lead nowhere else (no `//host`, no backslash a browser reads as a slash, no control character).
 */
export function dashboardPath(value: unknown, base: string): string | undefined {
  if (typeof value !== 'string' || value.length > 2000) return undefined;
  if (!value.startsWith(`${base}/`) && value !== base) return undefined;
  if (value.startsWith('//') || value.includes('\\') || hasControlCharacter(value)) return undefined;
  return value;
}
