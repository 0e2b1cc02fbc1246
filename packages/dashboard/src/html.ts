// HTML written with a tagged template that escapes every value it is given, unless it is already markup.
const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Markup that is safe to insert as it is: only `html` and `rawHtml` make it. */
export class SafeHtml {
  constructor(readonly value: string) {}

  toString(): string {
    return this.value;
  }
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => ESCAPES[char]!);
}

function render(value: unknown): string {
  if (value instanceof SafeHtml) return value.value;
  if (Array.isArray(value)) return value.map(render).join('');
  if (value === undefined || value === null || value === false) return '';
  return escapeHtml(String(value));
}

/** `html\`<td>${name}</td>\``: strings and numbers are escaped, `SafeHtml` and arrays of it are inserted. */
export function html(strings: TemplateStringsArray, ...values: unknown[]): SafeHtml {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1]!;
  return new SafeHtml(out);
}

/** Markup from a trusted constant (never from a request or a store). */
function rawHtml(markup: string): SafeHtml {
  return new SafeHtml(markup);
}

/**
 * Data for the page's script as a JSON block (`<script type="application/json">`), which no browser
 * runs: the content policy allows no inline script. `<` is escaped so no value can end the block.
 */
export function jsonBlock(id: string, data: unknown): SafeHtml {
  const json = JSON.stringify(data)
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
  return html`<script type="application/json" id="${id}">${rawHtml(json)}</script>`;
}
