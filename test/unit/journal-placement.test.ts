// Where a primary's journal is (src/journal/placement.ts, docs/JOURNAL.md "A journal
// that moved or was lost"): the rules of judgePlace, and the journal-at file from fixed
// bytes. test/integration/journal-moved.test.ts runs them on a real pair.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { JOURNAL_AT_FILE, judgePlace, readJournalAt, segmentsIn, writeJournalAt, type PlaceFacts } from '../../src/journal/placement.js';
import { DirStore } from '../../src/journal/store.js';
import { NewerFormatError } from '../../src/versioning/format.js';

const none = { count: 0, bytes: 0 };
const facts = (f: Partial<PlaceFacts>): PlaceFacts => ({ volume: 'db', folder: '/srv/j2', here: none, writtenDown: null, there: none, ownStream: false, ...f });

test('a journal with segments where the config says opens there, wherever it was written down', () => {
  assert.deepEqual(judgePlace(facts({ here: { count: 2, bytes: 9 } })), { kind: 'here' });
  assert.deepEqual(judgePlace(facts({ here: { count: 1, bytes: 9 }, writtenDown: '/srv/j1', there: { count: 3, bytes: 1 }, ownStream: true })),
    { kind: 'here' });
});

test('a journal that never began (no place written down, no stream of this node) begins where the config says', () => {
  assert.deepEqual(judgePlace(facts({})), { kind: 'here' });
});

test('the key moved and the files did not: refused, naming both folders, the segments and what to do', () => {
  const p = judgePlace(facts({ writtenDown: '/srv/j1', there: { count: 3, bytes: 12.5 * 1024 * 1024 }, ownStream: true }));
  assert.equal(p.kind, 'moved');
  assert.equal(p.kind === 'moved' && p.message, 'volume db: journal_dir is now /srv/j2, which holds no journal, and its journal is in /srv/j1 ' +
    '(3 segments, 13 MiB, holding the writes its peers have not received): move its files there with the daemon stopped ' +
    '(mv /srv/j1/* /srv/j2/), or set journal_dir back to /srv/j1, then reload; nothing was read or changed');
});

test('no segments where it is nor where it was: lost (a new stream follows); so too a journal of this node\'s stream never written down', () => {
  const gone = judgePlace(facts({ writtenDown: '/srv/j1', ownStream: true }));
  assert.equal(gone.kind, 'lost');
  assert.match(gone.kind === 'lost' ? gone.message : '',
    /^volume db: its journal is lost: neither \/srv\/j2 \(journal_dir\) nor \/srv\/j1, where it was, holds/);
  const emptied = judgePlace(facts({ writtenDown: '/srv/j2' }));
  assert.match(emptied.kind === 'lost' ? emptied.message : '', /^volume db: its journal is lost: \/srv\/j2 holds no segments of it/);
  // (A previous release's primary: its stream file says a journal began here.)
  assert.equal(judgePlace(facts({ ownStream: true })).kind, 'lost');
});

test('the journal-at file: written, read back, decoded from fixed bytes; a newer version and a broken one refused', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'journal-at-'));
  try {
    const store = new DirStore(dir);
    assert.equal(await readJournalAt(store), null);
    await writeJournalAt(store, '/srv/j1');
    assert.equal(fs.readFileSync(path.join(dir, JOURNAL_AT_FILE), 'utf8'), '{"version":1,"folder":"/srv/j1"}\n');
    fs.writeFileSync(path.join(dir, JOURNAL_AT_FILE), Buffer.from('7b2276657273696f6e223a312c22666f6c646572223a222f6d6e742f6a6f75726e616c227d0a', 'hex'));
    assert.equal(await readJournalAt(store), '/mnt/journal');
    fs.writeFileSync(path.join(dir, JOURNAL_AT_FILE), '{"version":2,"folder":"/srv/j1"}\n');
    await assert.rejects(readJournalAt(store), NewerFormatError);
    fs.writeFileSync(path.join(dir, JOURNAL_AT_FILE), '{"version":1,"folder":"relative"}\n');
    await assert.rejects(readJournalAt(store), /journal-at: no folder in it/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('segmentsIn counts segment files only, and an absent folder as none', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'segments-'));
  try {
    fs.writeFileSync(path.join(dir, '00000000000000000001.seg'), Buffer.alloc(100));
    fs.writeFileSync(path.join(dir, 'journal.lock'), 'x');
    fs.writeFileSync(path.join(dir, 'released'), Buffer.alloc(20));
    assert.deepEqual(segmentsIn(dir), { count: 1, bytes: 100 });
    assert.deepEqual(segmentsIn(path.join(dir, 'nowhere')), { count: 0, bytes: 0 });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
