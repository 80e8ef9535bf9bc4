// Real, independent NBD clients against a running daemon, over TCP and a unix socket:
// nbdinfo, qemu-io, qemu-img, nbdcopy, fio.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { TestDaemon } from '../helpers/daemon.js';
import { must, run } from '../helpers/run.js';
import { assertIdentical } from '../helpers/images.js';

for (const transport of ['tcp', 'unix'] as const) {
  describe(`real clients over ${transport}`, () => {
    let d: TestDaemon;
    before(async () => {
      d = await TestDaemon.create({
        unix: transport === 'unix',
        volumes: { disk: { size: '256MiB', default: true }, replica: { size: '16MiB', role: 'secondary' } },
      });
    });
    after(async () => {
      const code = await d.stop();
      assert.equal(code, 0, `daemon exit code on SIGTERM\n${d.log}`);
    });

    test('nbdinfo: export details, --list, --can, --is', async () => {
      const out = await must('nbdinfo', ['--json', d.uri('disk')]);
      const info = JSON.parse(out) as { exports: Array<Record<string, unknown>> };
      const e = info.exports[0]!;
      assert.equal(e['export-name'], 'disk');
      assert.equal(e['export-size'], 256 * 1024 * 1024);
      assert.equal(e['block_size_preferred'], 4096);
      const list = await must('nbdinfo', ['--list', '--json', d.uri('')]);
      const names = (JSON.parse(list) as { exports: Array<{ 'export-name': string }> }).exports.map((x) => x['export-name']).sort();
      assert.deepEqual(names, ['disk', 'replica']);
      for (const can of ['flush', 'fua', 'trim', 'zero', 'fast-zero', 'structured-reply', 'multi-conn', 'cache', 'df']) {
        const r = await run('nbdinfo', ['--can', can, d.uri('disk')]);
        assert.equal(r.code, 0, `--can ${can}: ${r.stderr}`);
      }
      assert.notEqual((await run('nbdinfo', ['--is', 'read-only', d.uri('disk')])).code, 0);
      assert.equal((await run('nbdinfo', ['--is', 'read-only', d.uri('replica')])).code, 0);
      assert.notEqual((await run('nbdinfo', ['--can', 'trim', d.uri('replica')])).code, 0);
      // The empty export name selects the default export.
      const dflt = JSON.parse(await must('nbdinfo', ['--json', d.uri('')])) as { exports: Array<Record<string, unknown>> };
      assert.equal(dflt.exports[0]!['export-size'], 256 * 1024 * 1024);
    });

    test('qemu-io: patterns, FUA, zeroes, discard, flush, aio', async () => {
      const cmds = [
        'write -P 0xab 0 1M', 'read -P 0xab 0 1M',
        'write -f -P 0x11 1M 64k', 'read -P 0x11 1M 64k',
        'write -P 0x55 2M 1M', 'write -z 2M 512k', 'read -P 0 2M 512k', 'read -P 0x55 2560k 512k',
        'write -P 0x66 4M 1M', 'write -z -u 4M 1M', 'read -P 0 4M 1M',
        'write -P 0x77 6M 1M', 'discard 6M 1M', 'flush',
        'aio_write -P 0x22 8M 64k', 'aio_write -P 0x33 9M 64k', 'aio_flush',
        'read -P 0x22 8M 64k', 'read -P 0x33 9M 64k',
        'write -P 0x44 255M 1M', 'read -P 0x44 255M 1M',
      ];
      const args = ['-f', 'raw', '-t', 'writeback'];
      for (const c of cmds) args.push('-c', c);
      const r = await run('qemu-io', [...args, d.qemuTarget('disk')]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.doesNotMatch(r.stdout + r.stderr, /fail|error|mismatch/i);
      const bad = await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0x99 0 4k', d.qemuTarget('disk')]);
      assert.match(bad.stdout + bad.stderr, /Pattern verification failed/, 'a wrong pattern is noticed');
      const oob = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 1 256M 4k', d.qemuTarget('disk')]);
      assert.match(oob.stdout + oob.stderr, /error|Input\/output|out of|No space|Invalid/i);
    });

    test('nbdinfo --map shows data and holes from the real allocation', async () => {
      await must('qemu-io', ['-f', 'raw', '-c', 'write -P 1 16M 1M', '-c', 'discard 17M 1M', d.qemuTarget('disk')]);
      const map = JSON.parse(await must('nbdinfo', ['--map', '--json', d.uri('disk')])) as Array<{ offset: number; length: number; type: number }>;
      const at = (off: number): number => map.find((e) => e.offset <= off && off < e.offset + e.length)!.type;
      assert.equal(at(16 * 1024 * 1024), 0, 'written range is data');
      assert.equal(at(17 * 1024 * 1024) & 1, 1, 'discarded range is a hole');
      assert.equal(at(100 * 1024 * 1024), 3, 'never-written range is a hole that reads as zero');
      const total = map.reduce((s, e) => s + e.length, 0);
      assert.equal(total, 256 * 1024 * 1024);
    });

    test('qemu-img convert -n then compare; nbdcopy both ways', async () => {
      const dir = d.dir;
      const src = path.join(dir, 'src.img');
      const data = crypto.randomBytes(32 * 1024 * 1024);
      data.fill(0, 8 << 20, 12 << 20); // a zero run in the middle
      fs.writeFileSync(src, data);
      // qemu-img compare needs equal sizes: grow the source to the export size.
      fs.truncateSync(src, 256 * 1024 * 1024);
      await must('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, d.qemuTarget('disk')]);
      await assertIdentical(src, d.qemuTarget('disk'));
      // A different byte is noticed.
      await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 20M 512', d.qemuTarget('disk')]);
      assert.equal((await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, d.qemuTarget('disk')])).code, 1);
      // nbdcopy out of and back into the export.
      const out = path.join(dir, 'out.img');
      await must('nbdcopy', [d.uri('disk'), out]);
      const back = fs.readFileSync(out);
      assert.equal(back.length, 256 * 1024 * 1024);
      assert.equal(back[20 * 1024 * 1024], 0x5a);
      assert.ok(back.subarray(0, 8 << 20).equals(data.subarray(0, 8 << 20)));
      const fresh = path.join(dir, 'fresh.img');
      const pattern = crypto.randomBytes(256 * 1024 * 1024);
      fs.writeFileSync(fresh, pattern);
      await must('nbdcopy', [fresh, d.uri('disk')]);
      await must('nbdcopy', [d.uri('disk'), out]);
      assert.ok(fs.readFileSync(out).equals(pattern), 'nbdcopy round trip is byte-identical');
      for (const f of [src, out, fresh]) fs.rmSync(f);
    });

    test('fio nbd engine: 4k random writes QD32, 1M sequential, 4 jobs, all verified', async () => {
      const base = ['--ioengine=nbd', `--uri=${d.uri('disk')}`, '--output-format=json', '--verify=crc32c', '--do_verify=1', '--verify_fatal=1'];
      const jobs = [
        ['--name=rand4k', '--rw=randwrite', '--bs=4k', '--iodepth=32', '--size=64M'],
        ['--name=seq1m', '--rw=write', '--bs=1M', '--iodepth=4', '--size=128M'],
        ['--name=multi', '--rw=randwrite', '--bs=16k', '--iodepth=8', '--size=32M', '--numjobs=4', '--offset_increment=32M'],
      ];
      for (const j of jobs) {
        const r = await run('fio', [...base, ...j], { timeoutMs: 300_000 });
        assert.equal(r.code, 0, `fio ${j[0]}: ${r.stderr}\n${r.stdout.slice(-2000)}`);
        const res = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as {
          jobs: Array<{ error: number; write: { io_bytes: number }; read: { io_bytes: number } }>;
        };
        for (const job of res.jobs) {
          assert.equal(job.error, 0);
          assert.ok(job.write.io_bytes > 0, 'fio wrote');
          assert.ok(job.read.io_bytes > 0, 'fio read back to verify');
        }
      }
    });
  });
}
