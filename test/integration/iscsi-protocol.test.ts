// The iSCSI transport against real initiators: libiscsi's tools (iscsi-ls, iscsi-inq,
// iscsi-readcapacity16) and QEMU's iscsi block driver (qemu-img, qemu-io), over an
// in-process IscsiServer serving file volumes through the real SCSI logical unit.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '../../src/log/log.js';
import { startTestTarget, type TestTarget } from '../helpers/iscsi-target.js';

const MiB = 1024 * 1024;
const TOOLS = ['iscsi-ls', 'iscsi-inq', 'iscsi-readcapacity16', 'qemu-img', 'qemu-io'];
const missing = TOOLS.filter((t) => !['/usr/bin', '/usr/local/bin', '/bin'].some((d) => fs.existsSync(path.join(d, t))));
const skip = missing.length > 0 ? `missing ${missing.join(', ')} (apt-get install libiscsi-bin qemu-utils qemu-block-extra)` : false;

interface Run {
  code: number;
  out: string;
}

function run(cmd: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 60_000, env: { ...process.env, ...env }, maxBuffer: 16 * MiB }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? (err as unknown as { code: number }).code : 1) : 0;
      resolve({ code, out: `${stdout}${stderr}` });
    });
  });
}

const ALLOWED = 'iqn.2026-01.test:allowed';
const OTHER = 'iqn.2026-01.test:other';

describe('iSCSI with real initiators', { skip }, () => {
  let t: TestTarget;
  const logged: string[] = [];
  before(async () => {
    const log = createLogger({ level: 'debug', format: 'json', destination: new Writable({ write(chunk, _e, cb) { logged.push(String(chunk)); cb(); } }) });
    t = await startTestTarget([
      { name: 'plain', size: 64 * MiB },
      { name: 'chap', size: 8 * MiB, auth: { chap: { user: 'backup', secret: 'secret-one-12' } } },
      { name: 'mutual', size: 8 * MiB, auth: { chap: { user: 'backup', secret: 'secret-one-12' }, mutual: { user: 'target', secret: 'secret-two-34' } } },
      { name: 'listed', size: 8 * MiB, auth: { initiators: [ALLOWED] } },
    ], { log });
  });
  after(async () => {
    await t?.close();
  });

  test('discovery (SendTargets=All) lists the targets the initiator may see', async () => {
    const r = await run('iscsi-ls', ['-i', OTHER, `iscsi://127.0.0.1:${t.port}/`]);
    assert.equal(r.code, 0, r.out);
    for (const name of ['plain', 'chap', 'mutual']) assert.match(r.out, new RegExp(`Target:${t.iqn(name)} Portal:127\\.0\\.0\\.1:${t.port},1`));
    assert.doesNotMatch(r.out, /:listed /, 'a target whose list does not name the initiator is not shown to it');
    const allowed = await run('iscsi-ls', ['-i', ALLOWED, `iscsi://127.0.0.1:${t.port}/`]);
    assert.match(allowed.out, /:listed /);
  });

  test('iscsi-inq and iscsi-readcapacity16 answer', async () => {
    const inq = await run('iscsi-inq', [t.url('plain')]);
    assert.equal(inq.code, 0, inq.out);
    assert.match(inq.out, /Peripheral Device Type:DIRECT_ACCESS/);
    const cap = await run('iscsi-readcapacity16', [t.url('plain')]);
    assert.equal(cap.code, 0, cap.out);
    assert.match(cap.out, /Total size:67108864/);
  });

  test('qemu-io writes, reads back and flushes patterns; qemu-img converts and compares', async () => {
    const io = await run('qemu-io', [
      '-f', 'raw', '-c', 'write -P 0x55 0 1M', '-c', 'read -P 0x55 0 1M', '-c', 'write -P 0xa7 5M 3M', '-c', 'read -P 0xa7 5M 3M', '-c', 'flush',
      t.url('plain'),
    ]);
    assert.equal(io.code, 0, io.out);
    assert.doesNotMatch(io.out, /Pattern verification failed|error/i, io.out);
    const info = await run('qemu-img', ['info', t.url('plain')]);
    assert.match(info.out, /virtual size: 64 MiB/);
    const src = path.join(t.dir, 'source.raw');
    const data = Buffer.alloc(16 * MiB);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
    fs.writeFileSync(src, data);
    const conv = await run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, t.url('plain')]);
    assert.equal(conv.code, 0, conv.out);
    const cmp = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, t.url('plain')]);
    assert.match(cmp.out, /Images are identical/, cmp.out);
    // And the bytes are on the volume, not only in what the target answered.
    const vol = Buffer.alloc(16 * MiB);
    await t.volumes.get('plain')!.read(0, vol, 0, vol.length);
    assert.ok(vol.equals(data), 'the volume holds what qemu-img wrote');
  });

  test('header digests (CRC32C) negotiated and checked both ways', async () => {
    const opts = `driver=raw,file.driver=iscsi,file.transport=tcp,file.portal=127.0.0.1:${t.port},` +
      `file.target=${t.iqn('plain')},file.lun=0,file.header-digest=crc32c`;
    const io = await run('qemu-io', ['--image-opts', '-c', 'write -P 0x3c 0 2M', '-c', 'read -P 0x3c 0 2M', opts]);
    assert.equal(io.code, 0, io.out);
    assert.doesNotMatch(io.out, /Pattern verification failed/);
    assert.match(logged.join(''), /HeaderDigest=CRC32C/, 'the session ran with header digests');
  });

  test('one-way CHAP: the right secret logs in, a wrong one or none is refused', async () => {
    const good = await run('iscsi-inq', [t.url('chap').replace('iscsi://', 'iscsi://backup%secret-one-12@')]);
    assert.equal(good.code, 0, good.out);
    const wrong = await run('iscsi-inq', [t.url('chap').replace('iscsi://', 'iscsi://backup%secret-one-13@')]);
    assert.notEqual(wrong.code, 0, wrong.out);
    assert.match(wrong.out, /Authentication failure|login|failed/i);
    const none = await run('iscsi-inq', [t.url('chap')]);
    assert.notEqual(none.code, 0, none.out);
    const io = await run('qemu-io', [
      '-f', 'raw', '-c', 'write -P 0x11 0 64k', '-c', 'read -P 0x11 0 64k', t.url('chap').replace('iscsi://', 'iscsi://backup%secret-one-12@'),
    ]);
    assert.equal(io.code, 0, io.out);
  });

  test('mutual CHAP: the target proves its secret; the initiator refuses a wrong one', async () => {
    const url = t.url('mutual').replace('iscsi://', 'iscsi://backup%secret-one-12@');
    const good = await run('iscsi-inq', [url], { LIBISCSI_CHAP_TARGET_USERNAME: 'target', LIBISCSI_CHAP_TARGET_PASSWORD: 'secret-two-34' });
    assert.equal(good.code, 0, good.out);
    const bad = await run('iscsi-inq', [url], { LIBISCSI_CHAP_TARGET_USERNAME: 'target', LIBISCSI_CHAP_TARGET_PASSWORD: 'not-the-one' });
    assert.notEqual(bad.code, 0, 'the initiator must find our CHAP_R wrong for another secret');
  });

  test('an initiator not on the list is refused; one on it logs in', async () => {
    const ok = await run('iscsi-inq', ['-i', ALLOWED, t.url('listed')]);
    assert.equal(ok.code, 0, ok.out);
    const no = await run('iscsi-inq', ['-i', OTHER, t.url('listed')]);
    assert.notEqual(no.code, 0, no.out);
    assert.match(no.out, /Authorization failure|login|failed/i);
  });

  test('a target that does not exist: Target not found', async () => {
    const r = await run('iscsi-inq', [`iscsi://127.0.0.1:${t.port}/iqn.2026-12.com.example:nope/0`]);
    assert.notEqual(r.code, 0);
    assert.match(r.out, /Target not found|failed/i);
  });
});

describe('iSCSI discovery with CHAP', { skip }, () => {
  let t: TestTarget;
  before(async () => {
    t = await startTestTarget([{ name: 'd', size: 4 * MiB }], { discoveryAuth: { chap: { user: 'disc', secret: 'discovery-secret' } } });
  });
  after(async () => {
    await t?.close();
  });

  test('the right secret lists the targets, a wrong one is refused', async () => {
    const good = await run('iscsi-ls', [`iscsi://disc%discovery-secret@127.0.0.1:${t.port}/`]);
    assert.equal(good.code, 0, good.out);
    assert.match(good.out, new RegExp(`Target:${t.iqn('d')}`));
    const ls = await run('iscsi-ls', ['-s', `iscsi://disc%discovery-secret@127.0.0.1:${t.port}/`]);
    assert.equal(ls.code, 0, ls.out);
    assert.match(ls.out, /Lun:0\s+Type:DIRECT_ACCESS/, 'iscsi-ls -s logs in to the target it found');
    const bad = await run('iscsi-ls', [`iscsi://disc%wrong-secret@127.0.0.1:${t.port}/`]);
    assert.notEqual(bad.code, 0, bad.out);
    assert.doesNotMatch(bad.out, /Target:/);
  });
});
