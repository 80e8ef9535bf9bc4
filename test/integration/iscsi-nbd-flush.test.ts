// NBD and iSCSI serve one volume at once, through one journaled write path: a
// SYNCHRONIZE CACHE sent over iSCSI (by qemu-io, a real initiator) is a flush point for
// writes acknowledged over NBD. Checked in the journal itself after a kill -9: the
// barrier the flush made follows the NBD write's record. Without the iSCSI flush, the
// NBD write stands after the last barrier (the baseline that lets this test fail).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TestDaemon, freePort } from '../helpers/daemon.js';
import { RawClient } from '../helpers/raw-client.js';
import { readJournal } from '../helpers/journal-inspect.js';
import { must } from '../helpers/run.js';
import * as P from '../../src/nbd/protocol.js';
import { RecordKind } from '../../src/journal/record.js';
import path from 'node:path';

test('a SYNCHRONIZE CACHE over iSCSI covers writes acknowledged over NBD', async () => {
  const iscsiPort = await freePort();
  const d = await TestDaemon.create({
    noStart: true,
    yaml: ({ nbd, api }) => `node: site-a
state: ./state
nbd: 127.0.0.1:${nbd}
api: 127.0.0.1:${api}
iscsi: { listen: "127.0.0.1:${iscsiPort}", iqn: iqn.2026-12.com.example:site-a }
peers:
  site-b: { address: "127.0.0.1:1" }
volumes:
  disk: { path: ./disk.img, size: 64MiB, role: primary, peer: site-b }
`,
  });
  const state = path.join(d.dir, 'state');
  /** An NBD write, acknowledged, with no flush after it. */
  const nbdWrite = async (offset: bigint, byte: number): Promise<void> => {
    const c = await RawClient.connect(d.connectOptions());
    await c.go('disk');
    c.request(P.NBD_CMD_WRITE, offset, 65536, { data: Buffer.alloc(65536, byte), handle: 5n });
    assert.deepEqual(await c.simpleReply(), { error: 0, handle: 5n });
    c.close();
  };
  const lastWriteAndBarrier = async (offset: number): Promise<{ write: number; barrier: number }> => {
    const { records } = await readJournal(state, 'disk');
    const write = records.filter((r) => r.kind === RecordKind.Write && r.offset === offset).at(-1)?.seq ?? -1;
    const barrier = records.filter((r) => r.kind === RecordKind.Barrier).at(-1)?.seq ?? -1;
    return { write, barrier };
  };
  try {
    await d.start();
    // Baseline: an NBD write and no flush anywhere: no barrier after it.
    await nbdWrite(1n << 20n, 0x61);
    await d.kill9();
    const before = await lastWriteAndBarrier(1 << 20);
    assert.ok(before.write > 0, 'the NBD write is journaled');
    assert.ok(before.barrier < before.write, `no flush point after the unflushed NBD write (barrier ${before.barrier}, write ${before.write})`);

    // The NBD write, then a write and a flush over iSCSI by qemu-io (SYNCHRONIZE CACHE; qemu
    // skips a flush when it wrote nothing since the last, hence its own write elsewhere).
    await d.start();
    await nbdWrite(2n << 20n, 0x62);
    const target = 'iqn.2026-12.com.example:site-a:disk';
    await must('qemu-io', ['--image-opts', '-c', 'write -P 0x63 3M 4k', '-c', 'flush',
      'driver=raw,file.driver=iscsi,file.transport=tcp,' +
        `file.portal=127.0.0.1:${iscsiPort},file.target=${target},file.lun=0,file.initiator-name=iqn.2026-12.com.example:h`]);
    await d.kill9();
    const after = await lastWriteAndBarrier(2 << 20);
    assert.ok(after.write > 0, 'the second NBD write is journaled');
    assert.ok(after.barrier > after.write, `the iSCSI flush made a flush point after the NBD write (barrier ${after.barrier}, write ${after.write})`);
  } finally {
    await d.stop();
  }
});
