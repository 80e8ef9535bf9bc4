// Refusals are said once per kind and address, then counted; event text never
// carries a control character to a terminal or a page.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { escapeControl, EventLog } from '../../src/log/events.js';
import { createLogger, type Logger } from '../../src/log/log.js';
import { RefusalLog, type Refusal } from '../../src/log/refusals.js';

function lines(): { log: Logger; got: string[] } {
  const got: string[] = [];
  return { got, log: { warn: (m: string) => got.push(m) } as unknown as Logger };
}

const badToken = (from: string): Refusal => ({
  kind: 'wrong token', from,
  first: `refused a call from ${from}: wrong token`,
  more: (n, f, span) => `refused ${n} more calls from ${f} in ${span}`,
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('the first refusal is logged in full, the rest counted per window; a quiet window starts afresh', async () => {
  const { log, got } = lines();
  const r = new RefusalLog({ log, windowMs: 200 });
  for (let i = 0; i < 100; i++) r.refuse(badToken('192.0.2.1'));
  r.refuse(badToken('192.0.2.2'));
  assert.deepEqual(got, ['refused a call from 192.0.2.1: wrong token', 'refused a call from 192.0.2.2: wrong token']);
  // Waits for the window to end (0.2 s) with a wide margin.
  await sleep(350);
  assert.deepEqual(got.slice(2), ['refused 99 more calls from 192.0.2.1 in the last 0.2 s'], 'nothing to say for 192.0.2.2');
  // A window after a summary keeps counting; once a window passes with none, the next is said in full.
  r.refuse(badToken('192.0.2.1'));
  await sleep(900);
  r.refuse(badToken('192.0.2.1'));
  assert.deepEqual(got.slice(3), ['refused 1 more calls from 192.0.2.1 in the last 0.2 s', 'refused a call from 192.0.2.1: wrong token']);
  r.close();
});

test('past maxAddresses, new addresses are counted together; close says what is left', () => {
  const { log, got } = lines();
  const r = new RefusalLog({ log, windowMs: 60_000, maxAddresses: 2 });
  for (let i = 1; i <= 50; i++) r.refuse(badToken(`192.0.2.${i}`));
  assert.deepEqual(got, [
    'refused a call from 192.0.2.1: wrong token',
    'refused a call from 192.0.2.2: wrong token',
    'refused a call from 192.0.2.3: wrong token',
  ]);
  r.close();
  assert.deepEqual(got.slice(3), ['refused 47 more calls from other addresses in the last minute']);
});

test('control characters are written out in events and in text log lines', () => {
  assert.equal(escapeControl('a\x1b[2Jb\nc\td\u202ee\x7f\x9b'), 'a\\x1b[2Jb\\nc\\td\\u202ee\\x7f\\x9b');
  assert.equal(escapeControl('plain: ümlaut, 日本'), 'plain: ümlaut, 日本');
  const events = new EventLog(10);
  events.record(40, [{ volume: 'v\x1b]0;x\x07' }, 'refused \x1b[31mred']);
  assert.deepEqual(events.recent(1).map((e) => [e.msg, e.volume]), [['refused \\x1b[31mred', 'v\\x1b]0;x\\x07']]);
  const out: string[] = [];
  const log = createLogger({ format: 'text', destination: { write: (s: string) => { out.push(s); return true; } } as unknown as NodeJS.WritableStream });
  log.warn('refused \x1b[2J\x1b[Hpwned\nfake line');
  assert.equal(out.length, 1);
  assert.match(out[0]!, /^\S+ warn refused \\x1b\[2J\\x1b\[Hpwned\\nfake line\n$/);
});
