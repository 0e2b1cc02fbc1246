// Reads deploy/Dockerfile the way the deploy tests follow it: the ARGs before its first stage, its stages with their RUN
// and COPY steps, and the final stage's ENV, USER, HEALTHCHECK and ENTRYPOINT, so a test runs the recipe rather than a
// copy of it.

export interface RecipeStage {
  /** The image it starts from, the ARGs' defaults filled in. */
  base: string;
  name?: string;
  workdir?: string;
  runs: string[];
  copies: { from?: string; source: string; target: string }[];
}

export interface Recipe {
  /** The ARGs declared before the first FROM, with their defaults (`ARG NODE_IMAGE=node:24-bookworm-slim`). */
  args: Record<string, string>;
  stages: RecipeStage[];
  /** The final stage's environment (its ENV lines, in order). */
  env: Record<string, string>;
  user: string;
  /** The HEALTHCHECK's command, exec form. */
  healthcheck: string[];
  entrypoint: string[];
}

/** The Dockerfile's instructions, one a line: comments dropped, `\` continuations joined. */
function instructions(text: string): { keyword: string; rest: string }[] {
  const lines: string[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    if (pending === '' && /^\s*#/.test(raw)) continue;
    const line = raw.trimEnd();
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1).trim()} `;
      continue;
    }
    const whole = `${pending}${line.trim()}`.trim();
    pending = '';
    if (whole !== '') lines.push(whole);
  }
  return lines.map((line) => {
    const [, keyword, rest] = /^(\w+)\s+(.*)$/.exec(line) ?? [];
    if (!keyword || rest === undefined) throw new Error(`cannot read the Dockerfile line: ${line}`);
    return { keyword: keyword.toUpperCase(), rest };
  });
}

/** `KEY=value KEY2=value2` (the ENV form the recipe uses; values without spaces or quotes). */
function assignments(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .split(/\s+/)
      .filter(Boolean)
      .map((pair) => {
        const at = pair.indexOf('=');
        if (at < 1) throw new Error(`ENV ${text}: write KEY=value pairs`);
        return [pair.slice(0, at), pair.slice(at + 1)];
      }),
  );
}

function execForm(text: string, what: string): string[] {
  const parsed = JSON.parse(text) as unknown;
  if (!Array.isArray(parsed) || !parsed.every((part) => typeof part === 'string'))
    throw new Error(`${what} must be in exec form (a JSON list of strings): ${text}`);
  return parsed;
}

export function readRecipe(text: string): Recipe {
  const stages: RecipeStage[] = [];
  const recipe: Recipe = { args: {}, stages, env: {}, user: 'root', healthcheck: [], entrypoint: [] };
  for (const { keyword, rest } of instructions(text)) {
    const stage = stages.at(-1);
    if (keyword === 'FROM') {
      const name = /\s+AS\s+(\S+)$/i.exec(rest)?.[1];
      const base = rest.split(/\s+/)[0]!.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, braced?: string, bare?: string) => {
        const value = recipe.args[(braced ?? bare)!];
        if (value === undefined) throw new Error(`FROM ${rest}: no ARG ${braced ?? bare} before it`);
        return value;
      });
      stages.push({ base, ...(name ? { name } : {}), runs: [], copies: [] });
      recipe.env = {};
      recipe.user = 'root';
      continue;
    }
    if (!stage) {
      if (keyword === 'ARG') Object.assign(recipe.args, assignments(rest));
      continue;
    }
    if (keyword === 'WORKDIR') stage.workdir = rest;
    else if (keyword === 'RUN') stage.runs.push(rest);
    else if (keyword === 'COPY') {
      const parts = rest.split(/\s+/);
      const from = parts.find((part) => part.startsWith('--from='))?.slice('--from='.length);
      const paths = parts.filter((part) => !part.startsWith('--'));
      stage.copies.push({ ...(from ? { from } : {}), source: paths[0]!, target: paths[1]! });
    } else if (keyword === 'ENV') Object.assign(recipe.env, assignments(rest));
    else if (keyword === 'USER') recipe.user = rest;
    else if (keyword === 'HEALTHCHECK') recipe.healthcheck = execForm(rest.replace(/^.*?\bCMD\s+/, ''), 'HEALTHCHECK');
    else if (keyword === 'ENTRYPOINT') recipe.entrypoint = execForm(rest, 'ENTRYPOINT');
  }
  return recipe;
}
