// scripts/check-imports.js (issue 14 item 5): no import circle in src/, between
// folders or files, type-only and dynamic imports included; what only looks like an
// import (a comment, a template literal) is no edge. On small trees; CI runs it on
// this one (npm run check:imports, before npm test).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { tempDir } from '../helpers/run.js';

const script = new URL('../../../scripts/check-imports.js', import.meta.url).pathname;

function check(files: Record<string, string>): { code: number; out: string } {
  const root = tempDir('imports');
  for (const [name, text] of Object.entries(files)) {
    const p = path.join(root, 'src', name);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, text);
  }
  const r = spawnSync(process.execPath, [script, '--root', root], { encoding: 'utf8' });
  fs.rmSync(root, { recursive: true, force: true });
  return { code: r.status ?? -1, out: r.stdout + r.stderr };
}

test('a tree without circles passes', () => {
  const r = check({ 'a/x.ts': "import { y } from '../b/y.js';\nexport const x = y;\n", 'b/y.ts': 'export const y = 1;\n' });
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /^imports: no circles among 2 files in 2 folders of src\/$/m);
});

test('a folder circle made of type-only imports is one, with the lines that make it', () => {
  const r = check({
    'a/x.ts': "import {\n  Y,\n} from '../b/y.js';\nexport type X = number;\n",
    'b/y.ts': "import type { X } from '../a/x.js';\nexport const Y: X = 1;\n",
  });
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /^folder circle: a -> b -> a$/m);
  assert.match(r.out, /a -> b: src\/a\/x\.ts:1 imports b\/y\.ts/);
  assert.match(r.out, /b -> a: src\/b\/y\.ts:1 \(type\) imports a\/x\.ts/);
  assert.match(r.out, /^file circle: a\/x\.ts -> b\/y\.ts -> a\/x\.ts$/m);
});

test('dynamic imports and export-from count; comments and template text do not', () => {
  const dynamic = check({
    'a/x.ts': "export * from './z.js';\n",
    'a/z.ts': "export async function f() { return (await import('../b/y.js')).y; }\n",
    'b/y.ts': "export { x } from '../a/w.js';\nexport const y = 1;\n",
    'a/w.ts': 'export const x = 1;\n',
  });
  assert.equal(dynamic.code, 1, dynamic.out);
  assert.match(dynamic.out, /a -> b: src\/a\/z\.ts:1 \(dynamic\) imports b\/y\.ts/);
  const quiet = check({
    'a/x.ts': "// import { y } from '../b/y.js';\n/* export * from '../b/y.js'; */\nexport const s = `import { y } from '../b/y.js'; ${1}`;\n",
    'b/y.ts': "import { s } from '../a/x.js';\nexport const y = s;\n",
  });
  assert.equal(quiet.code, 0, quiet.out);
});
