// The code's shape in figures: what each door of each package names, the longest functions, the gateway package's
// size and who imports its config, functions over 80 lines of their own, classes over 450 lines, import cycles (run-time
// ones, and counting type-only imports), lines over 120 characters and the example proxy's own size.
// `pnpm exec tsx bench/shape.ts` prints a Markdown report.
import { readdirSync, readFileSync, existsSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = fileURLToPath(new URL('..', import.meta.url));
const packagesDir = join(root, 'packages');

function sourceFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const found: string[] = [];
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) {
      if (entry !== 'node_modules' && entry !== 'dist') found.push(...sourceFiles(path));
    } else if (/\.(ts|mts|tsx)$/.test(entry) && !entry.endsWith('.d.ts')) found.push(path);
  }
  return found;
}

/** Names one door (a source file an `exports` entry maps to) exports, split into values and types. */
function doorNames(file: string): { values: number; types: number } | undefined {
  if (!existsSync(file)) return undefined;
  const program = ts.createProgram([file], {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    customConditions: ['source'],
    noEmit: true,
    skipLibCheck: true,
  });
  const checker = program.getTypeChecker();
  const module = checker.getSymbolAtLocation(program.getSourceFile(file)!);
  let values = 0;
  let types = 0;
  for (const symbol of checker.getExportsOfModule(module!)) {
    const target = symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
    if (target.flags & ts.SymbolFlags.Value) values++;
    else types++;
  }
  return { values, types };
}

/** Every door of a package: each `exports` subpath with a `source` file. */
function doorsOf(pkg: string): { name: string; file: string }[] {
  const manifest = JSON.parse(readFileSync(join(packagesDir, pkg, 'package.json'), 'utf8')) as {
    name: string;
    exports?: Record<string, string | { source?: string }>;
  };
  return Object.entries(manifest.exports ?? {}).flatMap(([subpath, target]) =>
    typeof target === 'object' && target.source
      ? [{ name: manifest.name + subpath.slice(1), file: join(packagesDir, pkg, target.source) }]
      : [],
  );
}

/** Every function's whole length (nested functions included), longest first. */
function functionLengths(files: string[]): { where: string; lines: number }[] {
  const found: { where: string; lines: number }[] = [];
  for (const file of files) {
    const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
    const lineOf = (position: number): number => source.getLineAndCharacterOfPosition(position).line;
    const visit = (node: ts.Node): void => {
      if (ts.isFunctionLike(node) && 'body' in node && node.body !== undefined) {
        const name = (node as { name?: ts.Node }).name?.getText() ?? '(anonymous)';
        const lines = lineOf(node.getEnd()) - lineOf(node.getStart()) + 1;
        found.push({ where: `${relative(root, file)}:${lineOf(node.getStart()) + 1} ${name}`, lines });
      }
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
  return found.sort((a, b) => b.lines - a.lines);
}

/** The file a relative specifier names, if it is one of ours. */
function resolveRelative(file: string, specifier: string): string | undefined {
  const base = join(file, '..', specifier).replace(/\.js$/, '');
  return [`${base}.ts`, `${base}.tsx`, join(base, 'index.ts')].find((candidate) => existsSync(candidate));
}

/**
 * Relative imports and re-exports of a file: those that load at run time, or with `types` also `import type`,
 * type-only names and `import('…')` type references.
 */
function relativeImports(file: string, types: boolean): string[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
  const targets: string[] = [];
  const add = (specifier: ts.Node | undefined): void => {
    if (!specifier || !ts.isStringLiteral(specifier) || !specifier.text.startsWith('.')) return;
    const target = resolveRelative(file, specifier.text);
    if (target) targets.push(target);
  };
  for (const statement of source.statements) {
    if (ts.isImportDeclaration(statement)) {
      const clause = statement.importClause;
      const bindings = clause?.namedBindings;
      const typeOnly =
        clause?.isTypeOnly === true ||
        (clause !== undefined &&
          !clause.name &&
          bindings !== undefined &&
          ts.isNamedImports(bindings) &&
          bindings.elements.length > 0 &&
          bindings.elements.every((element) => element.isTypeOnly));
      if (types || !typeOnly) add(statement.moduleSpecifier);
    } else if (ts.isExportDeclaration(statement)) {
      const clause = statement.exportClause;
      const typeOnly =
        statement.isTypeOnly ||
        (clause !== undefined && ts.isNamedExports(clause) && clause.elements.every((element) => element.isTypeOnly));
      if (types || !typeOnly) add(statement.moduleSpecifier);
    }
  }
  if (types) {
    const visit = (node: ts.Node): void => {
      if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) add(node.argument.literal);
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
  return targets;
}

/** Every relative import and re-export of a file, types included, as the files they name. */
function valueOrTypeImports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const targets: string[] = [];
  for (const match of text.matchAll(/(?:from|import)\s+'(\.[^']+)'/g)) {
    const base = join(file, '..', match[1]!).replace(/\.js$/, '');
    const found = [`${base}.ts`, join(base, 'index.ts')].find((candidate) => existsSync(candidate));
    if (found) targets.push(found);
  }
  return targets;
}

/** Cycles among files' imports (run-time ones, or with `types` all): the strongly connected groups of more than one file. */
function importCycles(files: string[], types: boolean): string[][] {
  const edges = new Map(files.map((file) => [file, relativeImports(file, types)]));
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const groups: string[][] = [];
  let counter = 0;
  const connect = (file: string): void => {
    index.set(file, counter);
    low.set(file, counter++);
    stack.push(file);
    onStack.add(file);
    for (const next of edges.get(file) ?? []) {
      if (!index.has(next)) {
        connect(next);
        low.set(file, Math.min(low.get(file)!, low.get(next)!));
      } else if (onStack.has(next)) low.set(file, Math.min(low.get(file)!, index.get(next)!));
    }
    if (low.get(file) === index.get(file)) {
      const group: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        group.push(member);
      } while (member !== file);
      if (group.length > 1) groups.push(group.map((path) => relative(root, path)));
    }
  };
  for (const file of files) if (!index.has(file)) connect(file);
  return groups;
}

/**
 * Functions (declarations, methods, arrows, expressions) whose own lines pass `limit`: their lines less those of the
 * functions nested in them (a factory of small named handlers is not one long function), with their whole length.
 */
function longFunctions(files: string[], limit: number): { where: string; own: number; lines: number }[] {
  const long: { where: string; own: number; lines: number }[] = [];
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const source = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
    const lineOf = (position: number): number => source.getLineAndCharacterOfPosition(position).line;
    const span = (node: ts.Node): number => lineOf(node.getEnd()) - lineOf(node.getStart()) + 1;
    const isFunction = (node: ts.Node): boolean => ts.isFunctionLike(node) && 'body' in node && node.body !== undefined;
    /** Lines of the functions nested directly (not through another function) in `node`. */
    const nestedLines = (node: ts.Node): number => {
      let lines = 0;
      ts.forEachChild(node, (child) => {
        lines += isFunction(child) ? span(child) : nestedLines(child);
      });
      return lines;
    };
    const visit = (node: ts.Node): void => {
      if (isFunction(node)) {
        const lines = span(node);
        const own = lines - nestedLines(node);
        if (own > limit) {
          const name = (node as { name?: ts.Node }).name?.getText() ?? '(anonymous)';
          long.push({ where: `${relative(root, file)}:${lineOf(node.getStart()) + 1} ${name}`, own, lines });
        }
      }
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
  return long.sort((a, b) => b.own - a.own);
}

/** Classes (declarations and expressions) longer than `limit` lines, longest first. */
function longClasses(files: string[], limit: number): { where: string; lines: number }[] {
  const long: { where: string; lines: number }[] = [];
  for (const file of files) {
    const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
    const lineOf = (position: number): number => source.getLineAndCharacterOfPosition(position).line;
    const visit = (node: ts.Node): void => {
      if (ts.isClassLike(node)) {
        const lines = lineOf(node.getEnd()) - lineOf(node.getStart()) + 1;
        const name = node.name?.getText() ?? '(anonymous)';
        if (lines > limit)
          long.push({ where: `${relative(root, file)}:${lineOf(node.getStart()) + 1} ${name}`, lines });
      }
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
  return long.sort((a, b) => b.lines - a.lines);
}

function linesOver(files: string[], width: number): number {
  let count = 0;
  for (const file of files) for (const line of readFileSync(file, 'utf8').split('\n')) if (line.length > width) count++;
  return count;
}

const packages = readdirSync(packagesDir).filter((name) => existsSync(join(packagesDir, name, 'package.json')));
const packageSources = packages.flatMap((pkg) => sourceFiles(join(packagesDir, pkg, 'src')));
const proxySources = sourceFiles(join(root, 'examples', 'proxy', 'src'));
const everything = [
  ...packageSources,
  ...proxySources,
  ...packages.flatMap((pkg) => sourceFiles(join(packagesDir, pkg, 'test'))),
  ...sourceFiles(join(root, 'test')),
  ...sourceFiles(join(root, 'bench')),
];

const rows: string[] = [];
let total = 0;
for (const pkg of packages) {
  for (const door of doorsOf(pkg)) {
    const names = doorNames(door.file);
    if (!names) continue;
    total += names.values + names.types;
    rows.push(`| ${door.name} | ${names.values + names.types} | ${names.values} | ${names.types} |`);
  }
}
const long = longFunctions(packageSources, 80);
const classes = longClasses(packageSources, 450);
const lengths = functionLengths(packageSources);
const proxyLines = proxySources.reduce((sum, file) => sum + readFileSync(file, 'utf8').split('\n').length - 1, 0);
const lineCount = (file: string): number => readFileSync(file, 'utf8').split('\n').length - 1;
const gatewaySources = sourceFiles(join(packagesDir, 'gateway', 'src'));
const gatewayLines = gatewaySources.reduce((sum, file) => sum + lineCount(file), 0);
const largest = [...gatewaySources].sort((a, b) => lineCount(b) - lineCount(a)).slice(0, 3);
const configFolder = join(packagesDir, 'gateway', 'src', 'config');
const configModules = new Set(
  existsSync(configFolder) ? sourceFiles(configFolder) : [join(packagesDir, 'gateway', 'src', 'config.ts')],
);
const configImporters = gatewaySources.filter(
  (file) => !configModules.has(file) && valueOrTypeImports(file).some((target) => configModules.has(target)),
);
const cycles = importCycles(packageSources, false);
const typeCycles = importCycles(packageSources, true);

console.log(`# Code shape\n`);
console.log(
  `| door | names | values | types |\n| --- | --- | --- | --- |\n${rows.join('\n')}\n| all doors | ${total} | | |\n`,
);
console.log(
  `Functions in packages/*/src, whole length (nested functions included): the longest ${lengths[0]?.lines} lines,`,
);
console.log(`${lengths.filter(({ lines }) => lines > 100).length} over 100 lines`);
for (const { where, lines } of lengths.filter(({ lines }) => lines > 100)) console.log(`- ${where}: ${lines}`);
const over100 = long.filter(({ own }) => own > 100).length;
console.log(
  `\nFunctions over 80 lines of their own (nested functions not counted) in packages/*/src: ${long.length}, ` +
    `${over100} of them over 100`,
);
for (const { where, own, lines } of long) console.log(`- ${where}: ${own} lines of its own, ${lines} in all`);
console.log(`\nClasses over 450 lines in packages/*/src: ${classes.length}`);
for (const { where, lines } of classes) console.log(`- ${where}: ${lines}`);
console.log(
  `\npackages/gateway/src: ${gatewayLines} lines in ${gatewaySources.length} files; the largest: ${largest
    .map((file) => `${relative(root, file)} (${lineCount(file)})`)
    .join(', ')}`,
);
console.log(`Files importing the gateway's config module outside its folder: ${configImporters.length}`);
for (const file of configImporters) console.log(`- ${relative(root, file)}`);
console.log(`\nRun-time import cycles among packages/*/src files: ${cycles.length}`);
for (const group of cycles) console.log(`- ${group.join(' ↔ ')}`);
console.log(`\nImport cycles among packages/*/src files, type-only imports counted: ${typeCycles.length}`);
for (const group of typeCycles) console.log(`- ${group.join(' ↔ ')}`);
console.log(`\nLines over 120 characters (packages, proxy, tests, bench): ${linesOver(everything, 120)}`);
console.log(
  `\nThe example proxy's own source (examples/proxy/src): ${proxyLines} lines in ${proxySources.length} files`,
);
