// An in-memory disk for the write path's unit tests: every call completes at once.
import type { Disk } from '../../src/journal/write-path.js';

export function memDisk(size: number): Disk & { data: Buffer } {
  let data = Buffer.alloc(size);
  let bytes = size;
  return {
    get data() { return data; },
    name: 'm', readOnly: false, description: '',
    get size() { return bytes; },
    read: async (o, into, at, l) => { data.copy(into, at, o, o + l); },
    write: async (o, d) => { d.copy(data, o); },
    writeZeroes: async (o, l) => { data.fill(0, o, o + l); },
    punch: async (o, l) => { data.fill(0, o, o + l); return true; },
    trim: async (o, l) => { data.fill(0, o, o + l); },
    flush: async () => undefined,
    cache: async () => undefined,
    extents: async (_o, l) => [{ length: l, hole: false }],
    extend: async (n) => {
      if (data.length >= n) return;
      const g = Buffer.alloc(n);
      data.copy(g);
      data = g;
    },
    setSize: (n) => {
      if (n < bytes || data.length < n) throw new Error(`memDisk: size ${n} without room made`);
      bytes = n;
    },
  };
}
