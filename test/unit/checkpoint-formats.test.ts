// The Hold frame (a secondary whose receive log is full under a checkpoint pauses
// the primary's shipping) decoded from fixed bytes, and the checkpoint file.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FrameDecoder, FrameError, FrameType, decodeHold, encodeHold } from '../../src/link/frame.js';

test('Hold frame: fixed bytes, both flags, and a bad flag is refused', () => {
  const wire = Buffer.concat(encodeHold('db', 42, true));
  assert.equal(wire.subarray(0, 12).toString('hex'), '4f46504c' + '01' + '09' + '0000' + '0d000000');
  const dec = new FrameDecoder();
  dec.push(wire);
  const f = dec.next()!;
  assert.equal(f.type, FrameType.Hold);
  assert.equal(f.payload.toString('hex'), '0200' + '6462' + '2a00000000000000' + '01');
  assert.deepEqual(decodeHold(f.payload), { volume: 'db', resumeAfter: 42, held: true });
  assert.deepEqual(decodeHold(Buffer.from('02006462' + '0700000000000000' + '00', 'hex')), { volume: 'db', resumeAfter: 7, held: false });
  assert.throws(() => decodeHold(Buffer.from('02006462' + '0700000000000000' + '02', 'hex')),
    (e: unknown) => e instanceof FrameError && /flag 2/.test((e as Error).message));
  assert.throws(() => decodeHold(Buffer.from('02006462' + '07000000', 'hex')), /not 9 bytes/);
});
