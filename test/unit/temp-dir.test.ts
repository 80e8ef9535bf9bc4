// Tests' temporary folders (test/helpers/run.ts tempDir): removed when the test process
// exits, whatever the test did; but a folder with a filesystem still mounted in it is
// left whole (a removal would cross into the mount and delete its files).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const helper = new URL('../helpers/run.js', import.meta.url).href;

/** Runs `body` in a child process that made a tempDir `dir`; returns the folder it made. */
function child(body: string): string {
  const code = `import { tempDir } from ${JSON.stringify(helper)}; import fs from 'node:fs'; import { execFileSync } from 'node:child_process';
    const dir = tempDir('exit-test'); fs.writeFileSync(dir + '/f', 'x'); ${body}; console.log(dir);`;
  const env = { ...process.env, OFFSITE_KEEP_DIRS: '', OFFSITE_DEBUG_DIRS: '' };
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', env });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim().split('\n').pop()!;
}

test('a test process\'s temporary folders are gone when it exits', () => {
  const dir = child('');
  assert.equal(fs.existsSync(dir), false, `${dir} removed`);
});

const asRoot = { skip: process.getuid?.() !== 0 ? 'mount needs root' : false };

test('a folder with a filesystem still mounted in it is left whole, its mount\'s files too', asRoot, () => {
  const dir = child("fs.mkdirSync(dir + '/m'); execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'none', dir + '/m']); " +
    "fs.writeFileSync(dir + '/m/kept', 'y')");
  try {
    assert.equal(fs.readFileSync(path.join(dir, 'm', 'kept'), 'utf8'), 'y', 'the mounted filesystem\'s file is still there');
    assert.ok(fs.existsSync(path.join(dir, 'f')));
  } finally {
    spawnSync('umount', [path.join(dir, 'm')]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
