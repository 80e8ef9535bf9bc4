// Which file a volume's state was kept for (src/volume/file-identity.ts): a rename keeps
// it, a copy does not, a state folder copied with the file is not a replacement; the
// file-id file from fixed bytes; a newer version refused.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import {
  FILE_ID_FILE, describeAfterCrash, describeChange, fileIdOf, forgetStopped, readFileId, replacedSince, timesOf, writeFileId, writeStopped,
  writtenAfterCrash, writtenWhileStopped, loopPlace,
  type FileId,
} from '../../src/volume/file-identity.js';
import { deviceWrites, diskIdentity, sysfsOf } from '../../src/volume/device-identity.js';
import { DirStore } from '../../src/journal/store.js';
import { NewerFormatError } from '../../src/versioning/format.js';
import { must, run, tempDir } from '../helpers/run.js';
import { ALIVE_MARK_SLACK_MS } from '../../src/limits/limits.js';

test('a renamed file is the same file; a copy is another; a state folder copied with it takes the copy', () => {
  const root = tempDir('file-id');
  try {
    const state = path.join(root, 'state');
    fs.mkdirSync(state);
    fs.writeFileSync(path.join(root, 'a.img'), Buffer.alloc(8192, 1));
    const kept = fileIdOf(path.join(root, 'a.img'), state)!;
    fs.renameSync(path.join(root, 'a.img'), path.join(root, 'b.img'));
    assert.equal(replacedSince(kept, fileIdOf(path.join(root, 'b.img'), state)!), false);
    fs.copyFileSync(path.join(root, 'b.img'), path.join(root, 'c.img'));
    const copy = fileIdOf(path.join(root, 'c.img'), state)!;
    assert.notEqual(copy.ino, kept.ino);
    assert.equal(replacedSince(kept, copy), true);
    // The state folder moved with it (cp -a of both): another folder too, so the copy is taken.
    fs.mkdirSync(path.join(root, 'state2'));
    assert.equal(replacedSince(kept, fileIdOf(path.join(root, 'c.img'), path.join(root, 'state2'))!), false);
    // A filesystem without birth times compares inodes alone.
    assert.equal(replacedSince({ ...kept, birth: 0n }, { ...kept, birth: 5n }), false);
    assert.equal(replacedSince({ ...kept, birth: 0n }, { ...kept, ino: kept.ino + 1n }), true);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('a block device is not checked', () => {
  assert.equal(fileIdOf('/dev/null', '/tmp'), null);
});

test('the file-id file: written, read back, decoded from fixed bytes (an inode past 2^53); newer and broken ones refused', async () => {
  const dir = tempDir('file-id-file');
  try {
    const store = new DirStore(dir);
    assert.equal(await readFileId(store), null);
    const id = { ino: 2n ** 60n + 7n, birth: 1796481237337958459n, folder: { ino: 12n, birth: 0n } };
    await writeFileId(store, id);
    assert.equal(fs.readFileSync(path.join(dir, FILE_ID_FILE), 'utf8'),
      '{"version":1,"ino":"1152921504606846983","birth":"1796481237337958459","folderIno":"12","folderBirth":"0"}\n');
    assert.deepEqual(await readFileId(store), id);
    fs.writeFileSync(path.join(dir, FILE_ID_FILE), Buffer.from('7b2276657273696f6e223a312c22696e6f223a2235222c226269727468223a2236222c' +
      '22666f6c646572496e6f223a2237222c22666f6c6465724269727468223a2238227d0a', 'hex'));
    assert.deepEqual(await readFileId(store), { ino: 5n, birth: 6n, folder: { ino: 7n, birth: 8n } });
    fs.writeFileSync(path.join(dir, FILE_ID_FILE), '{"version":2,"ino":"5","birth":"6","folderIno":"7","folderBirth":"8"}\n');
    await assert.rejects(readFileId(store), NewerFormatError);
    fs.writeFileSync(path.join(dir, FILE_ID_FILE), '{"version":1,"ino":5}\n');
    await assert.rejects(readFileId(store), /file-id: no identity in it/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a clean stop writes the file\'s times down; a write or a touch is found, a chmod or a rename is not; a crash writes nothing; fixed bytes', async () => {
  const root = tempDir('file-id-stopped');
  try {
    const state = path.join(root, 'state');
    fs.mkdirSync(state);
    const file = path.join(root, 'a.img');
    fs.writeFileSync(file, Buffer.alloc(8192, 1));
    const store = new DirStore(state);
    await writeStopped(store, file, state, fs.statSync(file, { bigint: true }));
    const kept = (await readFileId(store))!;
    const now = (): [NonNullable<ReturnType<typeof fileIdOf>>, ReturnType<typeof timesOf>] => {
      const st = fs.statSync(file, { bigint: true });
      return [fileIdOf(file, state, st)!, timesOf(st)];
    };
    assert.equal(writtenWhileStopped(kept, ...now()), false, 'untouched');
    // (A file's times move by the kernel's clock tick, a few ms: what comes later comes a tick later.)
    const tick = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 20));
    await tick();
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.alloc(512, 2), 0, 512, 4096);
    fs.closeSync(fd);
    assert.equal(writtenWhileStopped(kept, ...now()), true, 'written in place: the same inode, its times moved');
    // Nothing written down (a crash, or the identity an open writes): nothing to compare.
    assert.equal(writtenWhileStopped({ ...kept, stopped: undefined }, ...now()), false);
    // A file that is another is replacedSince's to judge, not this.
    const [id, t] = now();
    assert.equal(writtenWhileStopped(kept, { ...id, ino: id.ino + 1n }, t), false);
    // A chmod or a rename moves the change time, not the modification time: not a write (a file moved while stopped costs no comparison).
    await writeStopped(store, file, state, fs.statSync(file, { bigint: true }));
    await tick();
    fs.chmodSync(file, 0o640);
    const moved = path.join(root, 'moved.img');
    fs.renameSync(file, moved);
    const st = fs.statSync(moved, { bigint: true });
    assert.equal(writtenWhileStopped((await readFileId(store))!, fileIdOf(moved, state, st)!, timesOf(st)), false);
    fs.renameSync(moved, file);
    // A touch sets the modification time: taken for a write (one comparison by hash).
    await tick();
    fs.utimesSync(file, new Date(), new Date());
    assert.equal(writtenWhileStopped((await readFileId(store))!, ...now()), true, 'a touch moves the modification time');
    // A volume served without peers forgets the note: its file is written unwatched from then on.
    await writeStopped(store, file, state, fs.statSync(file, { bigint: true }));
    await forgetStopped(store);
    assert.equal((await readFileId(store))!.stopped, undefined);
    // Version 1 with `stopped`, from fixed bytes; a reader takes one without it as before.
    fs.writeFileSync(path.join(state, FILE_ID_FILE), '{"version":1,"ino":"5","birth":"6","folderIno":"7","folderBirth":"8",' +
      '"stopped":{"mtime":"1796481299000000001"}}\n');
    assert.deepEqual(await readFileId(store), {
      ino: 5n, birth: 6n, folder: { ino: 7n, birth: 8n }, stopped: { mtime: 1796481299000000001n },
    });
    fs.writeFileSync(path.join(state, FILE_ID_FILE), '{"version":1,"ino":"5","birth":"6","folderIno":"7","folderBirth":"8","stopped":{"mtime":"x"}}\n');
    await assert.rejects(readFileId(store), /file-id: no identity in it/);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('a disk\'s identity from sysfs: loop, device-mapper, md, WWID, serial, a partition of one; none; the dev_t encoding', () => {
  const root = tempDir('sysfs');
  try {
    const dev = (name: string, files: Record<string, string>): string => {
      const d = path.join(root, name);
      for (const [f, v] of Object.entries(files)) {
        fs.mkdirSync(path.dirname(path.join(d, f)), { recursive: true });
        fs.writeFileSync(path.join(d, f), `${v}\n`);
      }
      return d;
    };
    assert.equal(diskIdentity(dev('loop0', { 'loop/backing_file': '/srv/disk.raw', 'loop/offset': '4096' })), 'loop /srv/disk.raw offset 4096');
    assert.equal(diskIdentity(dev('dm-0', { 'dm/uuid': 'LVM-abc', 'dm/name': 'vg-db' })), 'dm LVM-abc');
    assert.equal(diskIdentity(dev('md0', { 'md/uuid': '1:2:3:4' })), 'md 1:2:3:4');
    const sdb = dev('sdb', { 'device/wwid': 'naa.6001405f', 'device/serial': 'X' });
    assert.equal(diskIdentity(sdb), 'wwid naa.6001405f');
    assert.equal(diskIdentity(dev('vdb', { serial: 'disk-7' })), 'serial disk-7');
    // A virtio disk with no serial (an empty file): no identity, not checked.
    assert.equal(diskIdentity(dev('vdc', { serial: '' })), null);
    // A partition: its disk's identity, its number, its first sector (sysfs keeps it under its disk's folder).
    assert.equal(diskIdentity(dev('sdb/sdb2', { partition: '2', start: '2048' })), 'wwid naa.6001405f partition 2 at 2048');
    assert.equal(diskIdentity(dev('vdc/vdc1', { partition: '1', start: '2048' })), null);
    // dev_t: major 259, minor 1048577 (the high bits of both).
    const rdev = ((259n & 0xfffn) << 8n) | ((259n & ~0xfffn) << 32n) | (1048577n & 0xffn) | ((1048577n & ~0xffn) << 12n);
    assert.equal(sysfsOf(rdev), '/sys/dev/block/259:1048577');
    assert.equal(sysfsOf((7n << 8n) | 3n), '/sys/dev/block/7:3');
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('a disk\'s file-id: the device compared, not the inode; a file is never a disk; fixed bytes', async () => {
  const folder = { ino: 7n, birth: 8n };
  const a = { ino: 0n, birth: 0n, device: 'wwid naa.1', folder };
  assert.equal(replacedSince(a, { ...a, device: 'wwid naa.1' }), false);
  assert.equal(replacedSince(a, { ...a, device: 'wwid naa.2' }), true);
  assert.equal(replacedSince(a, { ino: 5n, birth: 6n, folder }), true, 'a file where a disk was');
  assert.equal(replacedSince({ ino: 0n, birth: 0n, folder }, a), true, 'a disk where a file was');
  const dir = tempDir('file-id-disk');
  try {
    const store = new DirStore(dir);
    fs.writeFileSync(path.join(dir, FILE_ID_FILE), '{"version":1,"ino":"0","birth":"0","folderIno":"7","folderBirth":"8","device":"wwid naa.1"}\n');
    assert.deepEqual(await readFileId(store), a);
    await writeFileId(store, a, 'device-refused');
    assert.deepEqual(await readFileId(store, 'device-refused'), a);
    fs.writeFileSync(path.join(dir, FILE_ID_FILE), '{"version":1,"ino":"0","birth":"0","folderIno":"7","folderBirth":"8","device":5}\n');
    await assert.rejects(readFileId(store), /file-id: no identity in it/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a disk written while stopped: the kernel\'s counts the clean stop wrote down, compared in the same boot only; fixed bytes', async () => {
  const folder = { ino: 7n, birth: 8n };
  const disk = { ino: 0n, birth: 0n, device: 'dm LVM-x4Vb', folder };
  const at = (written: bigint, discarded = 0n, boot = 'b1'): ReturnType<typeof timesOf> => ({ mtime: 1n, writes: { boot, written, discarded } });
  const kept = { ...disk, stoppedWrites: { boot: 'b1', written: 100n, discarded: 0n } };
  assert.equal(writtenWhileStopped(kept, disk, at(100n)), false, 'nothing written since');
  assert.equal(writtenWhileStopped(kept, disk, at(108n)), true, 'written');
  assert.equal(writtenWhileStopped(kept, disk, at(100n, 2048n)), true, 'discarded');
  assert.equal(writtenWhileStopped(kept, disk, at(5n, 0n, 'b2')), false, 'another boot: its counts say nothing');
  assert.equal(writtenWhileStopped(kept, disk, at(5n)), true, 'counts that went back (the device made again): taken as written');
  assert.match(describeChange(kept, at(5n)), /below what the daemon's clean stop left: the device was made again since/);
  assert.equal(writtenWhileStopped(disk, disk, at(108n)), false, 'no clean stop written down (a crash)');
  assert.equal(writtenWhileStopped(kept, { ...disk, device: 'dm LVM-other' }, at(108n)), false, 'another disk is judged by replacedSince');
  assert.match(describeChange(kept, at(4196n, 2048n)),
    /^the kernel counted 2\.0 MiB written and 1\.0 MiB discarded to the disk since the daemon's clean stop$/);
  const bytes = '{"version":1,"ino":"0","birth":"0","folderIno":"7","folderBirth":"8","device":"dm LVM-x4Vb",' +
    '"stoppedWrites":{"boot":"b1","written":"100","discarded":"0"}}\n';
  await fixedBytes(kept, bytes, async (store, file) => {
    // The open clears it (forgetStopped, or the open's own write): a crash later is not taken for a write while stopped.
    await forgetStopped(store);
    assert.deepEqual(await readFileId(store), disk);
    fs.writeFileSync(file, bytes.replace('"written":"100"', '"written":-1'));
    await assert.rejects(readFileId(store), /file-id: no identity in it/);
  });
});

/** `id` written to a file-id is `bytes`, and read back whole; then `more` (the store, the file's path). */
async function fixedBytes(id: FileId, bytes: string, more: (store: DirStore, file: string) => Promise<void>): Promise<void> {
  const dir = tempDir('file-id-bytes');
  try {
    const store = new DirStore(dir);
    await writeFileId(store, id);
    assert.equal(fs.readFileSync(path.join(dir, FILE_ID_FILE), 'utf8'), bytes);
    assert.deepEqual(await readFileId(store), id);
    await more(store, path.join(dir, FILE_ID_FILE));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('a loop device\'s counts move with a write and a discard through its node, not with a read (root: losetup)', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root for losetup');
  const dir = tempDir('device-writes');
  const file = path.join(dir, 'disk.raw');
  fs.writeFileSync(file, Buffer.alloc(8 << 20));
  const dev = (await must('losetup', ['--find', '--show', file])).trim();
  try {
    const counts = (): NonNullable<ReturnType<typeof deviceWrites>> => deviceWrites(fs.statSync(dev, { bigint: true }))!;
    const before = counts();
    assert.ok(before.boot.length > 0);
    assert.equal(deviceWrites(fs.statSync(file, { bigint: true })), null, 'a file has none');
    await must('dd', [`if=${dev}`, 'of=/dev/null', 'bs=1M', 'count=4', 'iflag=direct', 'status=none']);
    assert.deepEqual(counts(), before, 'a read moves nothing');
    await must('dd', ['if=/dev/zero', `of=${dev}`, 'bs=64k', 'count=16', 'oflag=direct', 'conv=notrunc', 'status=none']);
    const after = counts();
    assert.equal(after.written - before.written, 2048n, '1 MiB is 2048 sectors');
    await must('blkdiscard', ['-o', '0', '-l', String(1 << 20), dev]);
    assert.ok(counts().discarded > after.discarded || counts().written > after.written, 'a discard is counted');
  } finally {
    await run('losetup', ['-d', dev]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a loop device\'s disk is its backing file: a rename while attached is the same disk, a copy at the same path another; fixed bytes', async () => {
  const folder = { ino: 7n, birth: 8n };
  const file = { ino: 41n, birth: 42n };
  const a = { ino: 0n, birth: 0n, device: 'loop /srv/a.raw offset 0', deviceFile: file, folder };
  assert.equal(replacedSince(a, { ...a, device: 'loop /srv/b.raw offset 0' }), false, 'renamed: the same file');
  assert.equal(replacedSince(a, { ...a, deviceFile: { ino: 43n, birth: 44n } }), true, 'another file at the same path');
  assert.equal(replacedSince({ ...a, deviceFile: undefined }, { ...a, device: 'loop /srv/b.raw offset 0' }), true,
    'a file-id of a release before it: the path compared');
  assert.equal(replacedSince({ ...a, deviceFile: undefined }, a), false);
  // Another place in the same file is another disk: another offset (losetup -o), another partition of it.
  assert.equal(replacedSince(a, { ...a, device: 'loop /srv/b.raw offset 1048576' }), true, 'renamed, and another offset in it');
  const p1 = { ...a, device: 'loop /srv/a.raw offset 0 partition 1 at 2048' };
  assert.equal(replacedSince(p1, { ...p1, device: 'loop /srv/b raw offset 0 partition 1 at 2048' }), false, 'its partition, the file renamed');
  assert.equal(replacedSince(p1, { ...p1, device: 'loop /srv/a.raw offset 0 partition 2 at 206848' }), true, 'another partition of the file');
  assert.equal(replacedSince(p1, a), true, 'the whole file where its partition was');
  assert.equal(loopPlace('loop /srv/my offset 7/a.raw offset 512 partition 2 at 2048'), 'offset 512 partition 2 at 2048', 'the path may hold " offset "');
  assert.equal(loopPlace('wwid naa.1'), null);
  const bytes = '{"version":1,"ino":"0","birth":"0","folderIno":"7","folderBirth":"8","device":"loop /srv/a.raw offset 0",' +
    '"deviceIno":"41","deviceBirth":"42"}\n';
  await fixedBytes(a, bytes, async (store, file) => {
    fs.writeFileSync(file, bytes.replace(',"device":"loop /srv/a.raw offset 0"', ''));
    await assert.rejects(readFileId(store), /file-id: no identity in it/, 'a device file without its disk');
  });
});

test('a real loop device: its backing file renamed while attached is the same disk; a copy attached at the old path is not (root: losetup)', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root for losetup');
  const dir = tempDir('loop-backing');
  const [one, two] = [path.join(dir, 'one.raw'), path.join(dir, 'two.raw')];
  fs.writeFileSync(one, Buffer.alloc(4 << 20, 1));
  const devs: string[] = [];
  try {
    devs.push((await must('losetup', ['--find', '--show', one])).trim());
    const kept = fileIdOf(devs[0]!, dir)!;
    assert.match(kept.device ?? '', new RegExp(`^loop ${one} offset 0$`));
    assert.equal(kept.deviceFile?.ino, fs.statSync(one, { bigint: true }).ino);
    fs.renameSync(one, two);
    const renamed = fileIdOf(devs[0]!, dir)!;
    assert.notEqual(renamed.device, kept.device, 'sysfs names the new path');
    assert.equal(replacedSince(kept, renamed), false, 'the same file');
    fs.copyFileSync(two, one);
    devs.push((await must('losetup', ['--find', '--show', one])).trim());
    const copy = fileIdOf(devs[1]!, dir)!;
    assert.equal(copy.device, kept.device, 'the same path');
    assert.equal(replacedSince(kept, copy), true, 'another file');
  } finally {
    for (const d of devs) await run('losetup', ['-d', d]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('after a crash, a file modified more than the slack after the daemon\'s last alive mark is written by another; nothing else is', () => {
  const folder = { ino: 7n, birth: 8n };
  const file = { ino: 5n, birth: 6n, folder };
  const alive = 1_796_481_299_000_000_000n;
  const slack = BigInt(ALIVE_MARK_SLACK_MS) * 1_000_000n;
  const at = (mtime: bigint): ReturnType<typeof timesOf> => ({ mtime });
  assert.equal(writtenAfterCrash(file, file, at(alive + slack + 1n), alive), true, 'modified past the slack after the last mark');
  assert.equal(writtenAfterCrash(file, file, at(alive + slack), alive), false, 'within the slack: the daemon\'s own last writes');
  assert.equal(writtenAfterCrash(file, file, at(alive - 1n), alive), false);
  assert.equal(writtenAfterCrash(file, file, at(alive + slack + 1n), null), false, 'no mark (a release before it, or one not writable): nothing told');
  assert.equal(writtenAfterCrash({ ...file, stopped: { mtime: alive } }, file, at(alive + slack + 1n), alive), false,
    'a clean stop wrote its times down: writtenWhileStopped judges');
  assert.equal(writtenAfterCrash(file, { ...file, ino: 9n }, at(alive + slack + 1n), alive), false, 'another file: replacedSince judges');
  assert.equal(writtenAfterCrash(file, { ...file, folder: { ino: 1n, birth: 2n } }, at(alive + slack + 1n), alive), false,
    'a state folder copied with it');
  const disk = { ino: 0n, birth: 0n, device: 'wwid naa.1', folder };
  assert.equal(writtenAfterCrash(disk, disk, at(alive + slack + 1n), alive), false, 'a block device keeps no time of its writes');
  assert.equal(describeAfterCrash(at(1_796_481_331_113_000_000n), alive),
    'modified 2026-12-05 14:35:31.113 UTC; the daemon was last alive at 2026-12-05 14:34:59.000 UTC, and did not stop cleanly');
});
