// Checkpoints and drills while the primary is busy (issue 16): every create, release,
// drill start and stop succeeds while qemu-io writes and flushes in a loop at the
// primary, each frozen image is byte-stable while held and is one of the primary's
// flush-point images, and `consistent` never reads false during normal applies.
//
// The oracle (test/helpers/flush-writer.ts): a writer whose every flush point can be
// read back from an image; a frozen image between two flushes, or torn, is caught.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { freeUdpPort, statusOf } from '../helpers/daemon.js';
import { startPair } from '../helpers/pair.js';
import { PAIRS_PER_RUN, prefixParity, startWriter } from '../helpers/flush-writer.js';
import { run, sleep, tempDir } from '../helpers/run.js';
import { assertIdentical } from '../helpers/images.js';
import { cli } from '../helpers/cli.js';

const BLOCK = 64 * 1024;
const BLOCKS = 256; // a 16 MiB volume

test('checkpoints and drills succeed while the primary writes and flushes in a loop; each image is a flush point, stable while held', async () => {
  const p = await startPair({ size: `${(BLOCK * BLOCKS) >> 20}MiB` });
  // The first sync is done before the writer and the sampler start.
  await p.drained(120_000);
  const writer = startWriter(p);
  let sampling = true;
  const samples = { consistent: 0, inconsistent: 0 };
  const sampler = (async () => {
    while (sampling) {
      const st = await statusOf(p.b);
      if (st.volumes[0]!.consistent) samples.consistent++;
      else samples.inconsistent++;
    }
  })();
  try {
    // (npm test: 8 of each; npm run test:soak, OFFSITE_SOAK=1: 50.)
    const rounds = process.env.OFFSITE_SOAK ? 50 : 8;
    for (let n = 0; n < rounds; n++) {
      const made = await cli(p.b, 'checkpoint', 'create', 'db', '--label', `busy-${n}`);
      assert.equal(made.code, 0, `checkpoint create ${n} refused under load: ${made.stderr}`);
      const first = await prefixParity(p.b.uri('db@checkpoint'), p.b.dir);
      assert.equal(first.parity, 0, `checkpoint ${n} froze an image between two flushes of the primary (${first.where}; ${made.stdout.trim()})`);
      const again = await prefixParity(p.b.uri('db@checkpoint'), p.b.dir);
      assert.equal(again.hash, first.hash, `checkpoint ${n} changed while held`);
      const rel = await cli(p.b, 'checkpoint', 'release', 'db');
      assert.equal(rel.code, 0, `checkpoint release ${n} failed under load: ${rel.stderr}`);
    }
    for (let n = 0; n < rounds; n++) {
      const started = await cli(p.b, 'drill', 'start', 'db');
      assert.equal(started.code, 0, `drill start ${n} refused under load: ${started.stderr}`);
      const img = await prefixParity(p.b.uri('db@drill'), p.b.dir);
      assert.equal(img.parity, 0, `drill ${n} started over an image between two flushes of the primary`);
      const stopped = await cli(p.b, 'drill', 'stop', 'db');
      assert.equal(stopped.code, 0, `drill stop ${n} failed under load: ${stopped.stderr}`);
    }
    const writes = await writer.stop();
    assert.ok(writes >= 4 * PAIRS_PER_RUN, `the writer kept the primary busy (${writes} writes)`);
    sampling = false;
    await sampler;
    assert.equal(samples.inconsistent, 0,
      `status said consistent: false ${samples.inconsistent} times of ${samples.consistent + samples.inconsistent} during normal applies`);
    assert.ok(samples.consistent > 0);
    // The replica then converges to the primary.
    await p.drained(120_000);
    await assertIdentical(p.a.uri('db'), p.b.uri('db'));
  } finally {
    sampling = false;
    await writer.stop().catch(() => undefined);
    await sampler.catch(() => undefined);
    await p.stop();
  }
});

test('under the same load: scheduled checkpoints are never skipped or refused, and SNMP SETs of the checkpoint control succeed', async () => {
  const ROOT = new URL('../../../', import.meta.url).pathname;
  const mibs = ['-M', `+${path.join(ROOT, 'node_modules/net-snmp/lib/mibs')}:${path.join(ROOT, 'mibs')}`, '-m', 'OFFSITE-MIB'];
  const toolDir = tempDir('snmp-tools');
  fs.mkdirSync(path.join(toolDir, 'cert_indexes'));
  const env = { ...process.env, SNMP_PERSISTENT_DIR: toolDir, SNMPCONFPATH: toolDir };
  const v3 = ['-v3', '-l', 'authPriv', '-u', 'ops', '-a', 'SHA', '-A', 'opsauth-123', '-x', 'AES', '-X', 'opspriv-456'];
  const snmpPort = await freeUdpPort();
  const p = await startPair({
    size: `${(BLOCK * BLOCKS) >> 20}MiB`,
    // Every 4 s, held for 1 s: a busy primary must not make one of them skip or fail.
    volumeKeysB: 'checkpoints: [{ cron: "*/4 * * * * *", hold: 1s, label: every4s }]',
    nodeKeysB: `snmp:
  listen: 127.0.0.1:${snmpPort}
  users:
    - { name: ops, auth_protocol: sha, auth_key: "opsauth-123", priv_protocol: aes, priv_key: "opspriv-456" }
`,
  });
  await p.drained(120_000);
  const writer = startWriter(p);
  try {
    const taken = (): number => (p.b.log.match(/checkpoint \\"every4s\\" held at record/g) ?? []).length;
    const start = taken();
    // SNMP SETs between the scheduled ones: create, then release, five times.
    let sets = 0;
    while (taken() - start < 6) {
      const cps = (await (await fetch(`http://127.0.0.1:${p.b.apiPort}/api/v1/checkpoints`)).json()) as { checkpoints: unknown[] };
      if (cps.checkpoints.length === 0 && sets < 5) {
        const made = await run('snmpset',
          [...v3, '-t', '10', '-r', '0', ...mibs, `127.0.0.1:${snmpPort}`, 'OFFSITE-MIB::offsiteVolumeCheckpointControl.1', 'i', '2'], { env });
        if (made.code === 0) {
          const rel = await run('snmpset',
            [...v3, '-t', '10', '-r', '0', ...mibs, `127.0.0.1:${snmpPort}`, 'OFFSITE-MIB::offsiteVolumeCheckpointControl.1', 'i', '3'], { env });
          assert.equal(rel.code, 0, `SNMP release under load: ${rel.stderr}`);
          sets++;
        } else {
          // Refused only because the schedule took one in between: that is a real reason.
          assert.match(made.stderr, /inconsistentValue/, `SNMP create under load: ${made.stderr}`);
        }
      }
      await sleep(250);
    }
    assert.ok(sets >= 1, 'at least one SNMP create and release went through');
    const writes = await writer.stop();
    assert.ok(writes > 0);
    const log = p.b.log;
    // (A schedule that comes while an SNMP manager holds one is skipped for that real
    // reason; one skipped because the last scheduled one was not yet let go, or not
    // taken at all, is the bug.)
    assert.doesNotMatch(log, /scheduled checkpoint \\"every4s\\" not taken/, 'a scheduled checkpoint was refused under load');
    assert.doesNotMatch(log, /scheduled checkpoint \\"every4s\\" skipped: checkpoint \\"every4s\\" is still held/,
      'a scheduled checkpoint was skipped: the last one was still held');
    assert.doesNotMatch(log, /SNMP: checkpoint (create|release) on db .* failed/);
  } finally {
    await writer.stop().catch(() => undefined);
    await p.stop();
  }
});
