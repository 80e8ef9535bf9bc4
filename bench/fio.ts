// Runs fio's nbd engine and returns IOPS and bandwidth.
import { execFileSync } from 'node:child_process';

export interface FioResult {
  iops: number;
  mbps: number;
}

export interface FioJob {
  name: string;
  rw: 'randwrite' | 'write' | 'randread';
  bs: string;
  iodepth: number;
  size: string;
}

export function fio(uri: string, job: FioJob, runtimeS: number): FioResult {
  const out = execFileSync('fio', [
    `--name=${job.name}`, '--ioengine=nbd', `--uri=${uri}`, `--rw=${job.rw}`, `--bs=${job.bs}`,
    `--iodepth=${job.iodepth}`, `--size=${job.size}`, '--time_based', `--runtime=${runtimeS}`,
    '--ramp_time=1', '--output-format=json', '--randrepeat=0',
  ], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const res = JSON.parse(out.slice(out.indexOf('{'))) as { jobs: Array<{ read: { iops: number; bw_bytes: number }; write: { iops: number; bw_bytes: number } }> };
  const j = res.jobs[0]!;
  const side = job.rw === 'randread' ? j.read : j.write;
  return { iops: side.iops, mbps: side.bw_bytes / 1e6 };
}
