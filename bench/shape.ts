// The code's shape in figures: what each package's door names, functions over 100 lines, lines over 120 characters,
// and the example proxy's own size. `pnpm exec tsx bench/shape.ts` prints a Markdown report.
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

/** Names a package's main door exports, split into values and types. */
function doorNames(pkg: string): { values: number; types: number } | undefined {
  const file = join(packagesDir, pkg, 'src', 'index.ts');
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
  const names = doorNames(pkg);
  if (!names) continue;
  total += names.values + names.types;
  rows.push(`| @tollgate/${pkg} | ${names.values + names.types} | ${names.values} | ${names.types} |`);
}
const long = longFunctions(packageSources, 100);
const proxyLines = proxySources.reduce((sum, file) => sum + readFileSync(file, 'utf8').split('\n').length - 1, 0);

console.log(`# Code shape\n`);
console.log(
  `| door | names | values | types |\n| --- | --- | --- | --- |\n${rows.join('\n')}\n| all | ${total} | | |\n`,
);
console.log(`Functions over 100 lines of their own (nested functions not counted) in packages/*/src: ${long.length}`);
for (const { where, own, lines } of long) console.log(`- ${where}: ${own} lines of its own, ${lines} in all`);
console.log(`\nLines over 120 characters (packages, proxy, tests, bench): ${linesOver(everything, 120)}`);
console.log(
  `\nThe example proxy's own source (examples/proxy/src): ${proxyLines} lines in ${proxySources.length} files`,
);
