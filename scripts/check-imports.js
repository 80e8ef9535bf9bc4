#!/usr/bin/env node
// No import circles in src/ (issue 14, item 5). Reads the import and export-from
// statements and the dynamic import('...') calls of src/**/*.ts, builds the graph of
// files and the graph of concepts (a concept is a folder under src/), and prints every
// circle in either. Exit 1 when there is one.
//
// Type-only imports count: `import type { X }` does not load a module, but a type that
// goes both ways still ties two concepts together. Value circles must be zero; a
// type-only edge may be kept only in ALLOWED below, with its reason. Dynamic imports
// count as value edges (they load the module, only later).
//
// `node scripts/check-imports.js` checks src/; `--graph` also prints the folder graph;
// `--root DIR` checks DIR/src.
// Plain Node, no dependency.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

/**
 * Type-only edges allowed to close a circle, as "from -> to" (folders, or files
 * relative to src/), each with its reason. Value edges are never allowed. Empty: keep it so.
 */
const ALLOWED = new Map([
  // ['folder-a -> folder-b', 'why this type has to point back'],
]);

// --root DIR: check DIR/src instead of this checkout's (the unit test's fixtures).
const rootArg = process.argv.indexOf('--root');
const root = rootArg > 0 ? resolve(process.argv[rootArg + 1] ?? '.') : resolve(dirname(new URL(import.meta.url).pathname), '..');
const src = join(root, 'src');

function walk(dir, out) {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/**
 * Blanks out comments and the text of template literals (their `${...}` parts stay
 * code), keeping offsets and line breaks, so that only code is matched. Quoted strings
 * are kept: module specifiers are strings.
 */
function codeOnly(text) {
  const out = text.split('');
  const n = text.length;
  const blank = (from, to) => {
    for (let k = from; k < to; k++) if (out[k] !== '\n') out[k] = ' ';
  };
  // One entry per open template literal's `${`: the brace depth at which it closes.
  const templates = [];
  let depth = 0;
  let i = 0;
  const template = () => {
    // i is just past a backtick or a `}` closing `${`: scan the template's text.
    const from = i;
    while (i < n) {
      if (text[i] === '\\') i += 2;
      else if (text[i] === '`') {
        blank(from, i);
        i++;
        return;
      } else if (text[i] === '$' && text[i + 1] === '{') {
        blank(from, i);
        i += 2;
        templates.push(depth);
        depth++;
        return;
      } else i++;
    }
    blank(from, n);
  };
  while (i < n) {
    const c = text[i];
    const d = text[i + 1];
    if (c === '/' && d === '/') {
      const j = text.indexOf('\n', i);
      const end = j < 0 ? n : j;
      blank(i, end);
      i = end;
    } else if (c === '/' && d === '*') {
      const j = text.indexOf('*/', i + 2);
      const end = j < 0 ? n : j + 2;
      blank(i, end);
      i = end;
    } else if (c === "'" || c === '"') {
      let j = i + 1;
      while (j < n && text[j] !== c && text[j] !== '\n') j += text[j] === '\\' ? 2 : 1;
      i = j + 1; // a quote without its pair on the line (in a regex, say) ends at the line
    } else if (c === '`') {
      i++;
      template();
    } else if (c === '{') {
      depth++;
      i++;
    } else if (c === '}') {
      depth--;
      i++;
      if (templates.length > 0 && templates[templates.length - 1] === depth) {
        templates.pop();
        template();
      }
    } else i++;
  }
  return out.join('');
}

const NAME = String.raw`[A-Za-z_$][\w$]*`;
const CLAUSE = String.raw`(?:${NAME}\s*,\s*)?(?:\{[^}]*\}|\*(?:\s+as\s+${NAME})?|${NAME})`;
const STATIC = new RegExp(String.raw`(?:^|[;}\n])\s*(import|export)\s+(type\s+)?(${CLAUSE})\s*from\s*(['"])([^'"\n]+)\4`, 'g');
const BARE = new RegExp(String.raw`(?:^|[;}\n])\s*import\s*(['"])([^'"\n]+)\1`, 'g');
const DYNAMIC = /\bimport\s*\(\s*(['"])([^'"\n]+)\1\s*\)/g;

/** Whether every name a `{ ... }` clause brings is marked `type`. */
function allTypes(clause) {
  const m = /^\{([^}]*)\}$/.exec(clause.trim());
  if (!m) return false;
  const names = m[1].split(',').map((s) => s.trim()).filter(Boolean);
  return names.length > 0 && names.every((s) => /^type\s/.test(s));
}

function lineOf(text, index) {
  let line = 1;
  for (let i = 0; i < index; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

/** The relative imports of one file: { to (absolute .ts path), kind: 'value'|'type'|'dynamic', line }. */
function importsOf(file) {
  const text = codeOnly(readFileSync(file, 'utf8'));
  const found = [];
  const add = (spec, kind, index) => {
    if (!spec.startsWith('.')) return; // a package or node: built-in
    let to = resolve(dirname(file), spec);
    if (to.endsWith('.js')) to = to.slice(0, -3) + '.ts';
    else if (!to.endsWith('.ts')) to += '.ts';
    found.push({ to, kind, line: lineOf(text, index) });
  };
  for (const m of text.matchAll(STATIC)) {
    const kind = m[2] || allTypes(m[3]) ? 'type' : 'value';
    add(m[5], kind, m.index + m[0].indexOf(m[1]));
  }
  for (const m of text.matchAll(BARE)) add(m[2], 'value', m.index + m[0].indexOf('import'));
  for (const m of text.matchAll(DYNAMIC)) add(m[2], 'dynamic', m.index);
  return found;
}

const rel = (p) => relative(src, p).split(sep).join('/');
const folderOf = (p) => {
  const r = rel(p);
  const i = r.indexOf('/');
  return i < 0 ? '(src)' : r.slice(0, i);
};

/** Strongly connected components with more than one node (or a node on a loop), by Tarjan. */
function circles(nodes, next) {
  let index = 0;
  const idx = new Map();
  const low = new Map();
  const stack = [];
  const on = new Set();
  const out = [];
  const visit = (v) => {
    idx.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    on.add(v);
    for (const w of next(v)) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const comp = [];
      let w;
      do {
        w = stack.pop();
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || next(v).includes(v)) out.push(comp.sort());
    }
  };
  for (const v of nodes) if (!idx.has(v)) visit(v);
  return out;
}

/** One shortest circle through `start` inside `comp`, as a list of nodes ending where it began. */
function oneCircle(start, comp, next) {
  const inComp = new Set(comp);
  const prev = new Map([[start, null]]);
  const queue = [start];
  while (queue.length > 0) {
    const v = queue.shift();
    for (const w of next(v)) {
      if (!inComp.has(w)) continue;
      if (w === start) {
        const path = [start];
        for (let u = v; u !== start; u = prev.get(u)) path.splice(1, 0, u);
        return [...path, start];
      }
      if (!prev.has(w)) {
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start];
}

const files = walk(src, []);
/** edges: from -> to -> [{ file, line, kind }] (file-level and folder-level graphs). */
const fileEdges = new Map();
const folderEdges = new Map();
const note = (graph, a, b, e) => {
  if (!graph.has(a)) graph.set(a, new Map());
  const m = graph.get(a);
  if (!m.has(b)) m.set(b, []);
  m.get(b).push(e);
};
for (const f of files) {
  for (const imp of importsOf(f)) {
    const e = { file: rel(f), line: imp.line, kind: imp.kind, to: rel(imp.to) };
    note(fileEdges, rel(f), rel(imp.to), e);
    const a = folderOf(f);
    const b = folderOf(imp.to);
    if (a !== b) note(folderEdges, a, b, e);
  }
}

let failed = false;
const usedAllowances = new Set();

function check(title, graph) {
  // An edge is dropped from the graph only when all its imports are type-only and it is allowed.
  const allowed = (a, b) => {
    const key = `${a} -> ${b}`;
    if (!ALLOWED.has(key)) return false;
    if (graph.get(a).get(b).some((e) => e.kind !== 'type')) return false;
    usedAllowances.add(key);
    return true;
  };
  const next = (v) => [...(graph.get(v)?.keys() ?? [])].filter((w) => !allowed(v, w));
  const nodes = [...new Set([...graph.keys(), ...[...graph.values()].flatMap((m) => [...m.keys()])])].sort();
  const found = circles(nodes, next);
  for (const comp of found) {
    failed = true;
    const loop = oneCircle(comp[0], comp, next);
    console.log(`${title} circle: ${loop.join(' -> ')}${comp.length > loop.length - 1 ? `  (${comp.length} in all: ${comp.join(', ')})` : ''}`);
    for (const a of comp) {
      for (const b of next(a)) {
        if (!comp.includes(b)) continue;
        for (const e of graph.get(a).get(b)) {
          console.log(`  ${a} -> ${b}: src/${e.file}:${e.line}${e.kind === 'value' ? '' : ` (${e.kind})`}${title === 'folder' ? ` imports ${e.to}` : ''}`);
        }
      }
    }
  }
  return found.length;
}

const nFolder = check('folder', folderEdges);
const nFile = check('file', fileEdges);
for (const key of ALLOWED.keys()) {
  if (!usedAllowances.has(key)) console.log(`note: allowed edge "${key}" is no longer needed; remove it from ALLOWED in scripts/check-imports.js`);
}
if (process.argv.includes('--graph')) {
  for (const [a, m] of [...folderEdges].sort()) console.log(`${a} -> ${[...m.keys()].sort().join(', ')}`);
}
if (failed) {
  console.log(`\n${nFolder} folder circle(s), ${nFile} file circle(s) among the imports of src/ (type-only imports count; see scripts/check-imports.js)`);
  process.exit(1);
}
console.log(`imports: no circles among ${files.length} files in ${new Set(files.map(folderOf)).size} folders of src/`);
