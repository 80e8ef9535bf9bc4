// The CLI against a test daemon, and the hash of an export read whole with nbdcopy.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { OFFSITE_BIN, type TestDaemon } from './daemon.js';
import { must, run } from './run.js';
import { fileSha } from './images.js';

export async function exportHash(uri: string, dir: string): Promise<string> {
  const file = path.join(dir, `copy-${crypto.randomBytes(4).toString('hex')}.img`);
  await must('nbdcopy', [uri, file]);
  const h = fileSha(file);
  fs.rmSync(file);
  return h;
}

export function cli(d: TestDaemon, ...args: string[]): ReturnType<typeof run> {
  return run(process.execPath, [OFFSITE_BIN, ...args, '-c', d.configFile]);
}

