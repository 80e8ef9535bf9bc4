// The checked contract between a front end and a backend (src/export/contract.ts):
// calls outside the backend's size or capabilities are bugs of the front end and
// break an invariant before they reach the disk; what the backend answers is checked.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { diskCapabilities, readOnlyCapabilities, type Capabilities, type Extent, type ExportBackend } from '../../src/export/backend.js';
import { CheckedBackend } from '../../src/export/contract.js';

function backend(caps: Capabilities, extents: Extent[] = [{ length: 4096, hole: false }]): ExportBackend & { calls: string[] } {
  const calls: string[] = [];
  const ok = (what: string) => (): Promise<void> => { calls.push(what); return Promise.resolve(); };
  return {
    name: 'v', size: 8192, readOnly: caps.readOnly, description: 'test', calls, capabilities: () => caps,
    read: ok('read'), write: ok('write'), writeZeroes: ok('zero'), trim: ok('trim'), flush: ok('flush'), cache: ok('cache'),
    extents: () => Promise.resolve(extents),
  };
}

test('calls within the size and the capabilities pass through', async () => {
  const b = backend(diskCapabilities(false));
  const c = new CheckedBackend(b);
  await c.read(0, Buffer.alloc(8192), 0, 8192);
  await c.write(4096, Buffer.alloc(4096), true);
  await c.writeZeroes(0, 8192, { fua: false, mayTrim: true, fast: true });
  await c.trim(0, 4096, false);
  await c.flush();
  assert.deepEqual(b.calls, ['read', 'write', 'zero', 'trim', 'flush']);
});

test('a request past the end, a write to a read-only backend, or a capability not offered breaks an invariant before the backend sees it', () => {
  const rw = backend({ ...diskCapabilities(false), fastZero: false, fua: false });
  const c = new CheckedBackend(rw);
  assert.throws(() => c.read(4097, Buffer.alloc(8192), 0, 4096), /invariant broken: export v: read at 4097\+4096 reached the backend outside its 8192 bytes/);
  assert.throws(() => c.writeZeroes(0, 4096, { fua: false, mayTrim: false, fast: true }), /a fast zero asked of a backend without it/);
  assert.throws(() => c.write(0, Buffer.alloc(10), true), /FUA asked of a backend without it/);
  const ro = new CheckedBackend(backend(readOnlyCapabilities(true)));
  assert.throws(() => ro.write(0, Buffer.alloc(1), false), /write reached a read-only backend/);
  assert.throws(() => ro.trim(0, 1, false), /trim reached a read-only backend/);
  assert.deepEqual(rw.calls, []);
});

test('capabilities that contradict themselves are refused when the export is added', () => {
  assert.throws(() => new CheckedBackend(backend({ ...readOnlyCapabilities(true), zero: true })), /read-only yet able to trim or zero/);
  assert.throws(() => new CheckedBackend({ ...backend(diskCapabilities(false)), readOnly: true }), /readOnly true but its capabilities say false/);
});

test('an allocation map that does not cover from the offset, or is empty, breaks an invariant', async () => {
  await assert.rejects(new CheckedBackend(backend(diskCapabilities(false), [])).extents(0, 4096, 8), /0 extents of 0 bytes/);
  await assert.rejects(new CheckedBackend(backend(diskCapabilities(false), [{ length: 8192, hole: false }])).extents(0, 4096, 8),
    /1 extents of 8192 bytes for 4096 bytes/);
  await assert.rejects(new CheckedBackend(backend(diskCapabilities(false), [{ length: 0, hole: true }])).extents(0, 4096, 8), /an empty extent at 0/);
});
