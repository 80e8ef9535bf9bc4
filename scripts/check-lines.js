#!/usr/bin/env node
// No line over 160 columns (the project's style). Reads src/**/*.ts and src/**/*.js,
// scripts/*.js, test/**/*.ts and bench/**/*.ts, and prints file:line (and its length)
// for every longer line. Exit 1 when there is one.
//
// A column is a character (a code point), so a line of non-ASCII text is not counted in
// bytes. A line that cannot be wrapped (one string or regex literal alone longer than
// the limit) may be kept only in EXEMPT_LINES below, with its reason; a file only in
// EXEMPT_FILES, with its reason.
//
// `node scripts/check-lines.js` checks this checkout.
// Plain Node, no dependency.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

const MAX = 160;

/** Files not checked at all, relative to the root, each with its reason. */
const EXEMPT_FILES = new Map([]);

/**
 * Single long lines kept, each as the file, a piece of text that only that line of the
 * file holds, and the reason. Only for a line that cannot be wrapped: one string or
 * regex literal alone over the limit. Do not add others; wrap them.
 */
const EXEMPT_LINES = [
  // Each: an assertion's regex literal, alone longer than 160 columns (the message it matches, whole).
  { file: 'test/integration/api-trust.test.ts', text: '/this API does not answer to the host name', why: 'one regex literal of 204 columns' },
  { file: 'test/integration/api-trust.test.ts', text: '/API: refused GET', why: 'one regex literal of 203 columns' },
  { file: 'test/integration/failover.test.ts', text: '/split brain: primary on both nodes', why: 'one regex literal of 249 columns' },
  { file: 'test/integration/nbd-limits.test.ts', text: '/NBD client 127', why: 'one regex literal of 177 columns' },
  { file: 'test/integration/protocol-versions.test.ts', text: '/^future speaks protocol versions', why: 'one regex literal of 167 columns' },
  { file: 'test/integration/snmp.test.ts', text: '/refused a checkpoint create on db', why: 'one regex literal of 182 columns' },
  { file: 'test/unit/versioning.test.ts', text: '/^site-a speaks protocol versions 2', why: 'one regex literal of 182 columns' },
  { file: 'test/unit/versioning.test.ts', text: '/^site-a speaks protocol versions 5', why: 'one regex literal of 173 columns' },
];

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');

function walk(dir, exts, deep, out) {
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (deep) walk(p, exts, deep, out);
    } else if (exts.some((e) => name.endsWith(e))) out.push(p);
  }
  return out;
}

const files = [
  ...walk(join(root, 'src'), ['.ts', '.js'], true, []),
  ...walk(join(root, 'scripts'), ['.js'], false, []),
  ...walk(join(root, 'test'), ['.ts'], true, []),
  ...walk(join(root, 'bench'), ['.ts'], true, []),
];
const rel = (p) => relative(root, p).split(sep).join('/');

const usedFiles = new Set();
const usedLines = new Set();
let long = 0;
let checked = 0;
for (const file of files) {
  const name = rel(file);
  if (EXEMPT_FILES.has(name)) {
    usedFiles.add(name);
    continue;
  }
  checked++;
  const lines = readFileSync(file, 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].replace(/\r$/, '');
    const width = [...line].length;
    if (width <= MAX) continue;
    const kept = EXEMPT_LINES.find((x) => x.file === name && line.includes(x.text));
    if (kept) {
      usedLines.add(kept);
      continue;
    }
    long++;
    console.log(`${name}:${i + 1}: ${width} columns`);
  }
}
for (const name of EXEMPT_FILES.keys()) {
  if (!usedFiles.has(name)) console.log(`note: exempt file ${name} is no longer there; remove it from EXEMPT_FILES in scripts/check-lines.js`);
}
for (const x of EXEMPT_LINES) {
  if (!usedLines.has(x)) console.log(`note: no long line of ${x.file} holds the exempt text; remove it from EXEMPT_LINES in scripts/check-lines.js`);
}
if (long > 0) {
  console.log(`\n${long} line(s) over ${MAX} columns (wrap them; see scripts/check-lines.js)`);
  process.exit(1);
}
console.log(`lines: none over ${MAX} columns in ${checked} files (${EXEMPT_FILES.size} exempt files, ${EXEMPT_LINES.length} exempt lines)`);
