// Where a primary's journal is (src/journal/placement.ts, docs/JOURNAL.md "Moving a
// journal, and a journal lost"): the rules of judgePlace, the journal-at file from fixed
// bytes, and moveJournal's order (src/journal/journal-move.ts).
// test/integration/journal-moved.test.ts runs them on a real pair.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { JOURNAL_AT_FILE, judgePlace, readJournalAt, segmentsIn, writeJournalAt, type PlaceFacts } from '../../src/journal/placement.js';
import { DirStore } from '../../src/journal/store.js';
import { moveJournal } from '../../src/journal/journal-move.js';
import { NewerFormatError } from '../../src/versioning/format.js';
import { tempDir } from '../helpers/run.js';

const none = { count: 0, bytes: 0 };
const facts = (f: Partial<PlaceFacts>): PlaceFacts =>
  ({ volume: 'db', folder: '/srv/j2', here: none, writtenDown: null, there: none, cutMove: false, ownStream: false, exists: true, ...f });

test('a journal with segments where the config says opens there, wherever it was written down', () => {
  assert.deepEqual(judgePlace(facts({ here: { count: 2, bytes: 9 } })), { kind: 'here' });
  assert.deepEqual(judgePlace(facts({ here: { count: 1, bytes: 9 }, writtenDown: '/srv/j1', ownStream: true })), { kind: 'here' });
});

test('a journal that never began (no place written down, no stream of this node) begins where the config says', () => {
  assert.deepEqual(judgePlace(facts({})), { kind: 'here' });
});

test('the key moved: the journal moves from the folder written down, while that folder holds it, whatever the new one holds', () => {
  const p = judgePlace(facts({ writtenDown: '/srv/j1', there: { count: 3, bytes: 12.5 * 1024 * 1024 }, ownStream: true }));
  assert.deepEqual(p, {
    kind: 'move', from: '/srv/j1', redo: false,
    message: 'volume db: journal_dir is now /srv/j2: moving its journal there from /srv/j1 (3 segments, 13 MiB)',
  });
  // A move a crash cut (written down as begun): its copies in the new folder go, and it is done again.
  const cut = judgePlace(facts({ here: { count: 2, bytes: 9 }, writtenDown: '/srv/j1', there: { count: 3, bytes: 1 }, cutMove: true }));
  assert.equal(cut.kind === 'move' && cut.redo, true);
  // Segments in the new folder that are no move's (the journal moved by hand, or another volume's, which
  // recovery's owner check refuses): opened as they are, the old folder's left alone.
  assert.deepEqual(judgePlace(facts({ here: { count: 2, bytes: 9 }, writtenDown: '/srv/j1', there: { count: 3, bytes: 1 } })), { kind: 'here' });
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

test('a journal folder that does not exist, where a journal began, is refused (a disk not mounted?); a new one begins there', () => {
  const missing = judgePlace(facts({ writtenDown: '/srv/j2', ownStream: true, exists: false }));
  assert.deepEqual(missing, {
    kind: 'missing',
    message: 'volume db: its journal folder /srv/j2 does not exist (its disk not mounted?): nothing was opened. Mount it and reload; if the ' +
      'journal is lost for good (a disk replaced), make the folder (mkdir -p /srv/j2) and reload: a new journal begins, and each peer is ' +
      'compared with this volume by hash',
  });
  assert.equal(judgePlace(facts({ writtenDown: '/srv/j1', exists: false })).kind, 'missing');
  assert.deepEqual(judgePlace(facts({ exists: false })), { kind: 'here' });
  // A move makes its folder.
  assert.equal(judgePlace(facts({ writtenDown: '/srv/j1', there: { count: 1, bytes: 1 }, exists: false })).kind, 'move');
});

test('the journal-at file: written, read back, decoded from fixed bytes; a newer version and a broken one refused', async () => {
  const dir = tempDir('journal-at');
  try {
    const store = new DirStore(dir);
    assert.equal(await readJournalAt(store), null);
    await writeJournalAt(store, { folder: '/srv/j1' });
    assert.equal(fs.readFileSync(path.join(dir, JOURNAL_AT_FILE), 'utf8'), '{"version":1,"folder":"/srv/j1"}\n');
    await writeJournalAt(store, { folder: '/srv/j2', leaving: '/srv/j1' });
    assert.deepEqual(await readJournalAt(store), { folder: '/srv/j2', leaving: '/srv/j1' });
    await writeJournalAt(store, { folder: '/srv/j1', moving: '/srv/j2' });
    assert.equal(fs.readFileSync(path.join(dir, JOURNAL_AT_FILE), 'utf8'), '{"version":1,"folder":"/srv/j1","moving":"/srv/j2"}\n');
    assert.deepEqual(await readJournalAt(store), { folder: '/srv/j1', moving: '/srv/j2' });
    fs.writeFileSync(path.join(dir, JOURNAL_AT_FILE), Buffer.from('7b2276657273696f6e223a312c22666f6c646572223a222f6d6e742f6a6f75726e616c227d0a', 'hex'));
    assert.deepEqual(await readJournalAt(store), { folder: '/mnt/journal' });
    fs.writeFileSync(path.join(dir, JOURNAL_AT_FILE), '{"version":2,"folder":"/srv/j1"}\n');
    await assert.rejects(readJournalAt(store), NewerFormatError);
    fs.writeFileSync(path.join(dir, JOURNAL_AT_FILE), '{"version":1,"folder":"relative"}\n');
    await assert.rejects(readJournalAt(store), /journal-at: no folder in it/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const journalFiles = (dir: string): Record<string, string> =>
  Object.fromEntries(fs.readdirSync(dir).sort().map((n) => [n, fs.readFileSync(path.join(dir, n), 'latin1')]));

function aJournal(dir: string): Record<string, string> {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, '00000000000000000001.seg'), 'segment one');
  fs.writeFileSync(path.join(dir, '00000000000000000042.seg'), 'segment two');
  fs.writeFileSync(path.join(dir, 'released'), 'r');
  fs.writeFileSync(path.join(dir, 'intent'), 'i');
  fs.writeFileSync(path.join(dir, 'journal.lock'), 'lock');
  return journalFiles(dir);
}

for (const [where, other] of [['the same filesystem (linked)', () => tempDir('to')],
  ['another filesystem (copied)', () => tempDir('to', '/dev/shm')]] as const) {
  test(`moveJournal on ${where}: every file there before the commit, the old ones gone after it`, async () => {
    const root = tempDir('from');
    const to = path.join(other(), 'j');
    try {
      const from = path.join(root, 'j');
      const was = aJournal(from);
      let atCommit: Record<string, string> = {};
      let begun = false;
      const moved = await moveJournal(from, to, async () => {
        begun = true;
        assert.deepEqual(journalFiles(to), {});
      }, async () => {
        assert.ok(begun);
        atCommit = journalFiles(to);
        assert.deepEqual(journalFiles(from), was);
      });
      const { 'journal.lock': lock, ...files } = was;
      assert.equal(lock, 'lock');
      assert.deepEqual(atCommit, files);
      assert.deepEqual(journalFiles(to), files);
      assert.deepEqual(journalFiles(from), { 'journal.lock': 'lock' });
      assert.deepEqual(moved, { files: 4, bytes: 24, copied: where.startsWith('another') });
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
      fs.rmSync(path.dirname(to), { recursive: true, force: true });
    }
  });
}

test('moveJournal after a move a crash cut: its copies are replaced; a journal file of another origin stops it, nothing moved', async () => {
  const root = tempDir('cut');
  try {
    const from = path.join(root, 'j1');
    const to = path.join(root, 'j2');
    const was = aJournal(from);
    fs.mkdirSync(to);
    fs.writeFileSync(path.join(to, '00000000000000000001.seg'), 'half');
    fs.writeFileSync(path.join(to, 'released.moving'), 'half');
    await moveJournal(from, to, async () => undefined, async () => undefined, true);
    const { 'journal.lock': _lock, ...files } = was;
    assert.deepEqual(journalFiles(to), files);

    const again = aJournal(path.join(root, 'j3'));
    fs.mkdirSync(path.join(root, 'j4'));
    fs.writeFileSync(path.join(root, 'j4', '00000000000000000099.seg'), 'not a copy');
    let committed = false;
    await assert.rejects(moveJournal(path.join(root, 'j3'), path.join(root, 'j4'), async () => {
      committed = true;
    }, async () => {
      committed = true;
    }), /holds 00000000000000000099\.seg, a segment of another journal; nothing was moved/);
    assert.equal(committed, false);
    assert.deepEqual(journalFiles(path.join(root, 'j3')), again);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('segmentsIn counts segment files only, and an absent folder as none', () => {
  const dir = tempDir('segments');
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
