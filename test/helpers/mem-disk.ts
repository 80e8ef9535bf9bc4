// An in-memory disk for the write path's unit tests: every call completes at once.
import type { Disk } from '../../src/journal/write-path.js';

export function memDisk(size: number): Disk & { data: Buffer } {
  const data = Buffer.alloc(size);
  return {
    data, name: 'm', size, readOnly: false, description: '',
    read: async (o, into, at, l) => { data.copy(into, at, o, o + l); },
    write: async (o, d) => { d.copy(data, o); },
    writeZeroes: async (o, l) => { data.fill(0, o, o + l); },
    punch: async (o, l) => { data.fill(0, o, o + l); return true; },
    trim: async (o, l) => { data.fill(0, o, o + l); },
    flush: async () => undefined,
    cache: async () => undefined,
    extents: async (_o, l) => [{ length: l, hole: false }],
  };
}
