// iSCSI on a live pair, with real initiators only: libiscsi's iscsi-ls and iscsi-inq,
// qemu-img and qemu-io over qemu's iscsi driver (qemu-block-extra), and a real ext4
// through qemu-nbd over iscsi://. Discovery and login with CHAP and an allow list;
// writes over iSCSI replicate; kill -9 of the primary mid-write keeps every flushed
// write; the promoted replica keeps the volume's SCSI identity.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { execFile, spawn } from 'node:child_process';
import { startPair, type Pair } from '../helpers/pair.js';
import { freePort, statusOf } from '../helpers/daemon.js';
import { must, run, sleep, waitFor } from '../helpers/run.js';
import { assertIdentical, fileSha } from '../helpers/images.js';
import { FuseLoop, requireRoot } from '../helpers/ext4.js';
import { cli } from '../helpers/cli.js';

const HOST = 'iqn.2026-12.com.example:host1';
const OTHER = 'iqn.2026-12.com.example:stranger';
const USER = 'backup';
const SECRET = 'twelve+chars-a';

interface Site { port: number; base: string }

async function iscsiPair(opts: { chap?: boolean } = {}): Promise<{ p: Pair; a: Site; b: Site }> {
  const [pa, pb] = [await freePort(), await freePort()];
  const section = (port: number, node: string): string => [
    'iscsi:',
    `  listen: 127.0.0.1:${port}`,
    `  iqn: iqn.2026-12.com.example:${node}`,
    ...(opts.chap ? [`  chap: { user: ${USER}, secret: "${SECRET}" }`, `  initiators: [ ${HOST} ]`] : []),
    '',
  ].join('\n');
  const p = await startPair({ size: '128MiB', nodeKeysA: section(pa, 'site-a'), nodeKeysB: section(pb, 'site-b') });
  return { p, a: { port: pa, base: 'iqn.2026-12.com.example:site-a' }, b: { port: pb, base: 'iqn.2026-12.com.example:site-b' } };
}

/** qemu's iscsi driver as --image-opts. */
function qemuOpts(site: Site, target: string, auth = false, initiator = HOST): string {
  return [
    'driver=raw', 'file.driver=iscsi', 'file.transport=tcp', `file.portal=127.0.0.1:${site.port}`,
    `file.target=${target}`, 'file.lun=0', `file.initiator-name=${initiator}`,
    ...(auth ? [`file.user=${USER}`, `file.password=${SECRET}`] : []),
  ].join(',');
}

function url(site: Site, target: string, auth = false, secret = SECRET): string {
  return `iscsi://${auth ? `${USER}%${secret}@` : ''}127.0.0.1:${site.port}/${target}/0`;
}

/**
 * A target's identity from its VPD page 0x83, as iscsi-inq prints it: the T10 vendor id
 * designator (ASCII, printed whole) and the NAA designator in hex. iscsi-inq prints a
 * binary designator as a C string, so the NAA's bytes show only up to the first zero
 * byte (CI seed: a volume whose NAA held one); the prefix shown is checked and compared,
 * and the vendor id, from the same hash, carries the rest.
 */
async function naaOf(site: Site, target: string, auth = false): Promise<string> {
  const out = await new Promise<string>((resolve, reject) => execFile(
    'iscsi-inq', ['-i', HOST, '-e', '1', '-c', '131', url(site, target, auth)], { encoding: 'latin1' },
    (e, stdout) => (e ? reject(e) : resolve(stdout)),
  ));
  const m = /Designator Type:\(3\) NAA\nDesignator:\[([\s\S]{1,8}?)\]\n(?=DEVICE DESIGNATOR|\s*$)/.exec(out);
  assert.ok(m, `no NAA designator in iscsi-inq's output:\n${out}`);
  const hex = Buffer.from(m[1]!, 'latin1').toString('hex');
  assert.equal(hex[0], '3', `NAA type 3 (locally assigned): ${hex}`);
  const vendor = /Designator Type:\(1\) T10_VENDORT?_ID\nDesignator:\[OFFSITE ([0-9a-f]{24})\]/.exec(out);
  assert.ok(vendor, `no T10 vendor id designator in iscsi-inq's output:\n${out}`);
  return `naa ${hex} serial ${vendor[1]}`;
}

test('iSCSI: discovery and login with CHAP and an allow list; wrong secret and a stranger refused', async () => {
  const { p, a } = await iscsiPair({ chap: true });
  try {
    const ls = await must('iscsi-ls', ['-i', HOST, `iscsi://${USER}%${SECRET}@127.0.0.1:${a.port}`]);
    assert.match(ls, new RegExp(`Target:${a.base.replace(/\./g, '\\.')}:db\\b`), ls);
    const wrong = await run('iscsi-ls', ['-i', HOST, `iscsi://${USER}%wrong-secret-x@127.0.0.1:${a.port}`]);
    assert.notEqual(wrong.code, 0, 'a wrong secret is refused');
    const none = await run('iscsi-ls', ['-i', HOST, `iscsi://127.0.0.1:${a.port}`]);
    assert.notEqual(none.code, 0, 'no CHAP is refused when CHAP is configured');
    const stranger = await run('qemu-img', ['info', '--image-opts', qemuOpts(a, `${a.base}:db`, true, OTHER)]);
    assert.notEqual(stranger.code, 0, 'an initiator not on the list is refused');
    const info = await must('qemu-img', ['info', '--output=json', '--image-opts', qemuOpts(a, `${a.base}:db`, true)]);
    assert.equal(JSON.parse(info)['virtual-size'], 128 * 1024 * 1024);
    await waitFor('the refusals logged', () => /iSCSI/i.test(p.a.log) && /refused/i.test(p.a.log), 10_000);
  } finally {
    await p.stop();
  }
});

test('iSCSI: qemu-io and qemu-img over iscsi:// replicate; status lists the session; ' +
  'the replica and a checkpoint are write-protected, a drill is writable', async () => {
  const { p, a, b } = await iscsiPair();
  try {
    const target = `${a.base}:db`;
    await must('qemu-io', ['--image-opts', '-c', 'write -P 0x5a 0 4M', '-c', 'write -P 0x3c -f 8M 1M', '-c', 'flush', qemuOpts(a, target)]);
    const src = path.join(p.a.dir, 'src.img');
    fs.writeFileSync(src, crypto.randomBytes(8 * 1024 * 1024));
    await must('qemu-img', [
      'convert', '-n', '-f', 'raw', src, '--target-image-opts', `${qemuOpts(a, target).replace('driver=raw,', 'driver=raw,offset=16777216,size=8388608,')}`,
    ]);
    const cmp = await run('qemu-img', ['compare', '--image-opts', `driver=raw,file.driver=file,file.filename=${src}`,
      `${qemuOpts(a, target).replace('driver=raw,', 'driver=raw,offset=16777216,size=8388608,')}`]);
    assert.equal(cmp.stdout.trim(), 'Images are identical.', cmp.stdout + cmp.stderr);
    await must('qemu-io', ['--image-opts', '-c', 'read -P 0x5a 0 4M', '-c', 'read -P 0x3c 8M 1M', qemuOpts(a, target)]);

    // A session held open shows in status with its initiator.
    const held = spawn('qemu-io', ['--image-opts', '-c', 'read 0 4k', '-c', 'sleep 20000', qemuOpts(a, target)], { stdio: 'ignore' });
    try {
      await waitFor('the session in status', async () => {
        const s = await statusOf(p.a) as unknown as { volumes: Array<{ iscsi: { target: string; sessions: Array<{ initiator: string }> } | null }> };
        const v = s.volumes[0]!;
        return v.iscsi?.target === target && v.iscsi.sessions.some((x) => x.initiator === HOST);
      }, 15_000);
    } finally {
      held.kill();
    }

    await p.drained();
    await assertIdentical(p.a.uri('db'), p.b.uri('db'));
    // The replica's target at site-b serves the same bytes, read-only.
    await must('qemu-io', ['--image-opts', '-r', '-c', 'read -P 0x5a 0 4M', qemuOpts(b, `${b.base}:db`)]);
    const w = await run('qemu-io', ['--image-opts', '-c', 'write -P 1 0 4k', qemuOpts(b, `${b.base}:db`)]);
    assert.match(w.stdout + w.stderr, /protect|read-only|Permission denied|not permitted/i, 'a write to the replica is refused');
    // Both sites present the volume as one disk.
    assert.equal(await naaOf(a, target), await naaOf(b, `${b.base}:db`));

    // A checkpoint is a read-only target of its own, a drill a writable one; both other disks.
    const cp = await cli(p.b, 'checkpoint', 'create', 'db', '--label', 'iscsi');
    assert.equal(cp.code, 0, cp.stderr);
    const cpTarget = `${b.base}:db:checkpoint`;
    await must('qemu-io', ['--image-opts', '-r', '-c', 'read -P 0x5a 0 4M', qemuOpts(b, cpTarget)]);
    const wcp = await run('qemu-io', ['--image-opts', '-c', 'write -P 1 0 4k', qemuOpts(b, cpTarget)]);
    assert.match(wcp.stdout + wcp.stderr, /protect|read-only|Permission denied|not permitted/i, 'a write to the checkpoint is refused');
    assert.notEqual(await naaOf(b, cpTarget), await naaOf(b, `${b.base}:db`), 'a checkpoint is another disk');
    const drill = await cli(p.b, 'drill', 'start', 'db');
    assert.equal(drill.code, 0, drill.stderr);
    await must('qemu-io', [
      '--image-opts', '-c', 'write -P 0x77 0 64k', '-c', 'read -P 0x77 0 64k', '-c', 'read -P 0x5a 64k 1M', qemuOpts(b, `${b.base}:db:drill`),
    ]);
    const sb = await statusOf(p.b) as unknown as { volumes: Array<{ iscsi: { exports: Array<{ export: string; target: string }> } | null }> };
    assert.deepEqual(sb.volumes[0]!.iscsi!.exports.map((x) => x.target).sort(), [cpTarget, `${b.base}:db:drill`].sort());
    assert.equal((await cli(p.b, 'drill', 'stop', 'db')).code, 0);
  } finally {
    await p.stop();
  }
});

test('iSCSI: kill -9 of the primary during iSCSI writes keeps every flushed write; the promoted volume keeps its identity', async () => {
  const { p, a, b } = await iscsiPair();
  try {
    const target = `${a.base}:db`;
    const naa = await naaOf(a, target);
    // Flushed writes first, then writes in flight at the kill.
    for (let i = 0; i < 8; i++) await must('qemu-io', ['--image-opts', '-c', `write -P ${0x10 + i} ${i}M 1M`, '-c', 'flush', qemuOpts(a, target)]);
    const busy = spawn('qemu-io', [
      '--image-opts', ...Array.from({ length: 40 }, (_, i) => ['-c', `write -P 0x77 ${16 + i}M 1M`]).flat(), qemuOpts(a, target),
    ], { stdio: 'ignore' });
    await sleep(300);
    await p.a.kill9();
    busy.kill();
    await p.a.start();
    for (let i = 0; i < 8; i++) await must('qemu-io', ['--image-opts', '-r', '-c', `read -P ${0x10 + i} ${i}M 1M`, qemuOpts(a, target)]);
    await p.drained(120_000);
    await assertIdentical(p.a.uri('db'), p.b.uri('db'));

    await p.a.kill9();
    await waitFor('site-b sees the link down', async () => (await statusOf(p.b)).volumes[0]!.link !== 'connected', 30_000);
    const promote = await cli(p.b, 'promote', 'db');
    assert.equal(promote.code, 0, promote.stderr);
    const promoted = `${b.base}:db`;
    await waitFor('site-b serves db writable',
      async () => (await run('qemu-io', ['--image-opts', '-c', 'write -P 0x99 100M 64k', qemuOpts(b, promoted)])).code === 0, 30_000);
    for (let i = 0; i < 8; i++) await must('qemu-io', ['--image-opts', '-r', '-c', `read -P ${0x10 + i} ${i}M 1M`, qemuOpts(b, promoted)]);
    assert.equal(await naaOf(b, promoted), naa, 'the promoted volume is the same disk to the host');
  } finally {
    await p.stop();
  }
});

test('iSCSI: a real ext4 through qemu-nbd over iscsi:// (mkfs, files, fstrim, fsck clean)', async () => {
  requireRoot();
  const { p, a } = await iscsiPair();
  const sock = path.join(p.a.dir, 'qnbd.sock');
  const mnt = path.join(p.a.dir, 'mnt');
  fs.mkdirSync(mnt);
  const qnbd = spawn('qemu-nbd', ['--image-opts', '--discard=unmap', '--cache=none', '-k', sock, '--persistent', qemuOpts(a, `${a.base}:db`)], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  let fl: FuseLoop | null = null;
  try {
    await waitFor('qemu-nbd listening', () => fs.existsSync(sock), 15_000);
    fl = await FuseLoop.attach(`nbd+unix:///?socket=${sock}`, p.a.dir);
    await must('mkfs.ext4', ['-q', '-F', '-E', 'discard', fl.loop]);
    await must('mount', [fl.loop, mnt]);
    const files = new Map<string, string>();
    for (let i = 0; i < 20; i++) {
      const f = path.join(mnt, `f${i}.bin`);
      fs.writeFileSync(f, crypto.randomBytes(4096 + i * 53 * 1024));
      files.set(f, fileSha(f));
    }
    for (let i = 0; i < 20; i += 4) { fs.rmSync(path.join(mnt, `f${i}.bin`)); files.delete(path.join(mnt, `f${i}.bin`)); }
    await must('sync', []);
    assert.equal((await run('fstrim', [mnt])).code, 0, 'fstrim over UNMAP');
    await must('umount', [mnt]);
    const fsck = await run('e2fsck', ['-fn', fl.loop]);
    assert.equal(fsck.code, 0, `e2fsck -fn: ${fsck.stdout}${fsck.stderr}`);
    await must('mount', ['-o', 'ro', fl.loop, mnt]);
    for (const [f, h] of files) assert.equal(fileSha(f), h, f);
    await must('umount', [mnt]);
    await fl.detach();
    fl = null;
    await p.drained();
    await assertIdentical(p.a.uri('db'), p.b.uri('db'));
  } finally {
    await run('umount', [mnt]);
    await fl?.detach();
    // (qemu-nbd can spin on its iSCSI reconnects and outlive SIGTERM: killed after 5 s, so the test file ends.)
    const gone = new Promise((r) => (qnbd.exitCode !== null || qnbd.signalCode !== null ? r(null) : qnbd.once('exit', r)));
    qnbd.kill();
    const late = setTimeout(() => qnbd.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(late);
    await p.stop();
  }
});
