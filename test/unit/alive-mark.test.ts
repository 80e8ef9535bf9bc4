// The daemon's alive mark (src/node/alive-mark.ts): its bytes, the previous run's read
// before this run's is written, handed to a volume's first open only, and removed when
// it cannot be written (a stale one would take the daemon's own writes for another's).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ALIVE_FILE, AliveMark, decodeAlive, encodeAlive } from '../../src/node/alive-mark.js';
import { createLogger, silentLogger } from '../../src/log/log.js';
import { tempDir } from '../helpers/run.js';
import { ALIVE_MARK_SLACK_MS } from '../../src/limits/limits.js';

test('the alive mark from fixed bytes; anything else is no mark', () => {
  const bytes = '{"version":1,"time":"1796481299000000000"}\n';
  const alive = { time: 1_796_481_299_000_000_000n, before: new Map<string, bigint>() };
  assert.equal(encodeAlive(alive).toString(), bytes);
  assert.deepEqual(decodeAlive(Buffer.from(bytes)), alive);
  const carried = '{"version":1,"time":"1796481299000000000","before":{"db":"1796481000000000000","wal":"5"}}\n';
  const withBefore = { time: 1_796_481_299_000_000_000n, before: new Map([['wal', 5n], ['db', 1_796_481_000_000_000_000n]]) };
  assert.equal(encodeAlive(withBefore).toString(), carried, 'names in order');
  assert.deepEqual(decodeAlive(Buffer.from(carried)), { ...withBefore, before: new Map([['db', 1_796_481_000_000_000_000n], ['wal', 5n]]) });
  assert.equal(decodeAlive(Buffer.from('{"version":1,"time":1796481299000}\n')), null);
  assert.equal(decodeAlive(Buffer.from('{"version":1,"time":"1","before":{"db":2}}')), null);
  assert.equal(decodeAlive(Buffer.from('{"version":1,"time":"1","before":["db"]}')), null);
  assert.equal(decodeAlive(Buffer.from('{"version":1}')), null);
  assert.equal(decodeAlive(Buffer.from('not json')), null);
});

test('a start reads the previous run\'s mark, then writes its own; a volume\'s opens get it until one acts on it; one never opened carries it on', async () => {
  const dir = tempDir('alive');
  const file = path.join(dir, ALIVE_FILE);
  try {
    let now = 5_000_000_000n;
    const first = new AliveMark(dir, silentLogger, () => now);
    await first.start(['db', 'wal']);
    assert.equal(first.previous, null, 'no mark before the first run');
    assert.equal(first.lastAliveOf('db'), null);
    assert.equal(fs.readFileSync(file, 'utf8'), '{"version":1,"time":"5000000000"}\n');
    first.openedOne('db');
    first.openedOne('wal');
    await first.stop();
    // A crash; the next start opens db, and wal's open fails before it acts on what it found (its journal's disk not mounted).
    now = 9_000_000_000n;
    const second = new AliveMark(dir, silentLogger, () => now);
    await second.start(['db', 'wal']);
    assert.equal(second.previous?.time, 5_000_000_000n);
    assert.equal(fs.readFileSync(file, 'utf8'), '{"version":1,"time":"9000000000","before":{"db":"5000000000","wal":"5000000000"}}\n',
      'this run\'s, written at once, the volumes not opened yet carried');
    assert.equal(second.lastAliveOf('db'), 5_000_000_000n);
    assert.equal(second.lastAliveOf('db'), 5_000_000_000n, 'until the open acts on it');
    second.openedOne('db');
    assert.equal(second.lastAliveOf('db'), null, 'a role change or reopen finds the file as this run wrote it');
    assert.equal(second.lastAliveOf('wal'), 5_000_000_000n);
    now = 19_000_000_000n;
    await second.tick();
    assert.equal(fs.readFileSync(file, 'utf8'), '{"version":1,"time":"19000000000","before":{"wal":"5000000000"}}\n');
    await second.stop();
    // Restarted again before wal opened: wal's is still the run that had it open, not the one between.
    now = 30_000_000_000n;
    const third = new AliveMark(dir, silentLogger, () => now);
    await third.start(['db', 'wal']);
    assert.equal(third.lastAliveOf('wal'), 5_000_000_000n);
    assert.equal(third.lastAliveOf('db'), 19_000_000_000n);
    assert.equal(third.lastAliveOf('logs'), 19_000_000_000n, 'a volume added since: the last run\'s time');
    await third.stop();
    // A mark of a newer release refuses the start, as any state file of one.
    fs.writeFileSync(file, '{"version":2,"time":"1"}\n');
    await assert.rejects(new AliveMark(dir, silentLogger).start([]), (e: Error) => e.message.includes(ALIVE_FILE) && /newer|version 2/.test(e.message));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a mark that cannot be written is removed, said once, and written again later', async () => {
  const dir = tempDir('alive-fail');
  try {
    const out: string[] = [];
    const logger = createLogger({ format: 'json', destination: { write: (l: string) => out.push(l) } as unknown as NodeJS.WritableStream });
    const mark = new AliveMark(dir, logger);
    await mark.start([]);
    const file = path.join(dir, ALIVE_FILE);
    assert.ok(fs.existsSync(file));
    // Its replace fails as on a full disk.
    const store = (mark as unknown as { store: { replace: (n: string, d: Buffer) => Promise<void> } }).store;
    const replace = store.replace.bind(store);
    store.replace = () => Promise.reject(Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }));
    await mark.tick();
    assert.equal(fs.existsSync(file), false, 'a stale mark does not stand');
    await mark.tick();
    assert.equal(out.filter((l) => /cannot write the alive mark .* \(ENOSPC\); it is removed/.test(l)).length, 1, 'said once');
    store.replace = replace;
    await mark.tick();
    assert.ok(fs.existsSync(file));
    assert.ok(out.some((l) => /the alive mark is written again/.test(l)));
    await mark.stop();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a mark whose write the disk holds up past half the slack is removed; the held write, stale on arrival, too; the next one stands', async () => {
  const dir = tempDir('alive-held');
  try {
    const out: string[] = [];
    const logger = createLogger({ format: 'json', destination: { write: (l: string) => out.push(l) } as unknown as NodeJS.WritableStream });
    const s = 1_000_000_000n;
    let now = 1000n * s;
    const mark = new AliveMark(dir, logger, () => now);
    await mark.start([]);
    const file = path.join(dir, ALIVE_FILE);
    const store = (mark as unknown as { store: { replace: (n: string, d: Buffer) => Promise<void> } }).store;
    const replace = store.replace.bind(store);
    let release: () => void = () => undefined;
    store.replace = (n, d) => new Promise<void>((r) => (release = r)).then(() => replace(n, d));
    now += 10n * s;
    const held = mark.tick();
    // Ticks while it is held: no second write; within half the slack the mark stands.
    now += BigInt(ALIVE_MARK_SLACK_MS / 2 / 1000 - 10) * s;
    void mark.tick();
    assert.ok(fs.existsSync(file), 'within half the slack');
    now += 2n * s;
    void mark.tick();
    assert.equal(fs.existsSync(file), false, 'past half the slack: removed');
    assert.ok(out.some((l) => /the alive mark .* fell 32 s behind \(the disk holds its writes up\); it is removed/.test(l)), out.join(''));
    now += 10n * s;
    release();
    await held;
    assert.equal(fs.existsSync(file), false, 'the held write, begun 32 s ago, is behind on arrival');
    store.replace = replace;
    await mark.tick();
    assert.equal(fs.readFileSync(file, 'utf8'), `{"version":1,"time":"${now}"}\n`);
    await mark.stop();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
