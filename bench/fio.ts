// Runs fio's nbd engine and returns IOPS and bandwidth.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';

export interface FioResult {
  iops: number;
  mbps: number;
}

export interface FioJob {
  name: string;
  rw: 'randwrite' | 'write' | 'randread' | 'read';
  bs: string;
  iodepth: number;
  size: string;
  /** A FLUSH (fio's fsync) after every this many writes. */
  fsync?: number;
}

export function fio(uri: string, job: FioJob, runtimeS: number): FioResult {
  // Every run starts from a settled page cache: the run before's dirty pages are written
  // back first, so no server pays for another's writeback (the order of a round had
  // moved 4 KiB random writes by 3x).
  execFileSync('sync');
  const out = execFileSync('fio', [
    `--name=${job.name}`, '--ioengine=nbd', `--uri=${uri}`, `--rw=${job.rw}`, `--bs=${job.bs}`,
    `--iodepth=${job.iodepth}`, `--size=${job.size}`, '--time_based', `--runtime=${runtimeS}`,
    '--ramp_time=1', '--output-format=json', '--randrepeat=0', ...(job.fsync ? [`--fsync=${job.fsync}`] : []),
  ], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const res = JSON.parse(out.slice(out.indexOf('{'))) as {
    jobs: Array<{ read: { iops: number; bw_bytes: number }; write: { iops: number; bw_bytes: number } }>;
  };
  const j = res.jobs[0]!;
  const side = job.rw.includes('read') ? j.read : j.write;
  return { iops: side.iops, mbps: side.bw_bytes / 1e6 };
}

/** The median; of an even count, the mean of the two middle values (not the upper one: of two rounds, the better). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Waits until something accepts TCP connections on 127.0.0.1:port: tried every `everyMs`, for at most `timeoutMs`. */
export async function waitPort(port: number, timeoutMs = 10_000, everyMs = 100): Promise<void> {
  for (let i = 0; i < Math.ceil(timeoutMs / everyMs); i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`nothing listening on ${port}`);
}

/**
 * Every server of a side-by-side run starts from the same page cache: the shared image
 * written back and read whole (clean, cached). Left as the server before left it, 4 KiB
 * random writes moved by 4x with the order (writes into pages an O_DIRECT server had
 * dropped from the cache run much faster than writes into clean cached ones, on any server).
 */
export function settleImage(image: string, size: number): void {
  execFileSync('sync');
  const fd = fs.openSync(image, 'r');
  try {
    const buf = Buffer.allocUnsafe(8 << 20);
    for (let at = 0; at < size; at += buf.length) fs.readSync(fd, buf, 0, buf.length, at);
  } finally {
    fs.closeSync(fd);
  }
}
