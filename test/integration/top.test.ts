// `offsite top` in a real terminal (tmux): it shows the volume, refreshes as writes
// flow (the backlog and host rate move), and q leaves it.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { test } from 'node:test';
import { OFFSITE_BIN } from '../helpers/daemon.js';
import { startPair } from '../helpers/pair.js';
import { must, run, sleep } from '../helpers/run.js';

test('offsite top in tmux: shows and refreshes the volume, q quits', async () => {
  const p = await startPair({ size: '64MiB', peerKeysA: 'rate: 8mbit' });
  const session = `offsite-top-${process.pid}`;
  try {
    await p.drained();
    await must('tmux', [
      'new-session', '-d', '-s', session, '-x', '140', '-y', '40', `${process.execPath} ${OFFSITE_BIN} top --interval 500ms -c ${p.a.configFile}`,
    ]);
    const screen = async (): Promise<string> => (await must('tmux', ['capture-pane', '-p', '-t', session])).toString();
    let first = '';
    for (let i = 0; i < 200 && !first.includes('db '); i++) {
      await sleep(100);
      first = await screen();
    }
    assert.match(first, /offsite top: node site-a/);
    assert.match(first, /^db {2}64 MiB {2}primary, consistent/m);
    assert.match(first, /link connected to site-b \(cap 8\.0 Mbit\/s\)/);
    assert.match(first, /backlog 0 B/);
    // Random (incompressible) writes over a capped link: the backlog shows, the host
    // rate moves. A pattern would compress to nothing and drain before a refresh.
    const data = `${p.a.dir}/random.bin`;
    fs.writeFileSync(data, crypto.randomBytes(16 << 20));
    await must('qemu-io', ['-f', 'raw', '-c', `write -s ${data} 0 16M`, '-c', 'flush', p.a.uri('db')]);
    let later = '';
    for (let i = 0; i < 50; i++) {
      await sleep(100);
      later = await screen();
      if (/backlog [1-9][0-9.]* MiB/.test(later)) break;
    }
    assert.match(later, /backlog [1-9][0-9.]* MiB/, later);
    assert.notEqual(later, first, 'the screen refreshed');
    await must('tmux', ['send-keys', '-t', session, 'q']);
    for (let i = 0; i < 100 && (await run('tmux', ['has-session', '-t', session])).code === 0; i++) await sleep(100);
    assert.notEqual((await run('tmux', ['has-session', '-t', session])).code, 0, 'q quits');
  } finally {
    await run('tmux', ['kill-session', '-t', session]);
    await p.stop();
  }
});
