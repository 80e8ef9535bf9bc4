// Two sites on this machine for the benches: configs, offsite init and pinned
// fingerprints, daemons started and killed, status and actions over the API.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(new URL('../..', import.meta.url).pathname);
export const bin = path.join(root, 'bin/offsite.js');

export interface Site { name: string; cfg: string; nbd: number; api: number; proc: ChildProcess | null; dir: string; bin?: string; nodeArgs?: string[] }
export interface Vol { link: string; role: string; backlogBytes: number; resyncing: boolean; consistent: boolean }

/** site-a (primary) and site-b (secondary) of one volume `db` in `dir`, paired. */
export function makeSites(dir: string, base: number, volume: string): Site[] {
  const sites: Site[] = ['site-a', 'site-b'].map((name, i) => ({
    name, cfg: path.join(dir, `${name}.yaml`), nbd: base + i, api: base + 4 + i, proc: null, dir,
  }));
  sites.forEach((s, me) => {
    const peer = sites[1 - me]!;
    fs.writeFileSync(s.cfg, `node: ${s.name}\nstate: ./state-${s.name}\nnbd: 127.0.0.1:${s.nbd}\nlink: 127.0.0.1:${base + 2 + me}\napi: 127.0.0.1:${s.api}\n` +
      `peers:\n  ${peer.name}: { address: "127.0.0.1:${base + 3 - me}", fingerprint: "FP", timeout: 2s }\n` +
      `volumes:\n  db: { path: ./${s.name}.img, role: ${me === 0 ? 'primary' : 'secondary'}, peer: ${peer.name}, ${volume} }\n`);
  });
  const fp = (s: Site): string => execFileSync(process.execPath, [bin, 'init', '-c', s.cfg], { encoding: 'utf8' }).trim().split('\n').pop()!;
  const [fa, fb] = [fp(sites[0]!), fp(sites[1]!)];
  fs.writeFileSync(sites[0]!.cfg, fs.readFileSync(sites[0]!.cfg, 'utf8').replace('"FP"', `"${fb}"`));
  fs.writeFileSync(sites[1]!.cfg, fs.readFileSync(sites[1]!.cfg, 'utf8').replace('"FP"', `"${fa}"`));
  return sites;
}

export function start(s: Site): void {
  const out = fs.openSync(`${s.cfg}.log`, 'a');
  s.proc = spawn(process.execPath, [...(s.nodeArgs ?? []), s.bin ?? bin, 'daemon', '-c', s.cfg], { stdio: ['ignore', out, out] });
}

export async function kill9(s: Site): Promise<void> {
  const p = s.proc;
  if (!p) return;
  const done = new Promise((r) => p.once('exit', r));
  p.kill('SIGKILL');
  await done;
  s.proc = null;
}

/** Stops a daemon cleanly (SIGTERM), so a --cpu-prof profile is written. */
export async function stop(s: Site): Promise<void> {
  const p = s.proc;
  if (!p) return;
  const done = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  await done;
  s.proc = null;
}

export async function vol(s: Site): Promise<Vol | null> {
  try {
    return ((await (await fetch(`http://127.0.0.1:${s.api}/api/v1/status`)).json()) as { volumes: Vol[] }).volumes[0]!;
  } catch {
    return null;
  }
}

export async function until(f: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 6000 && !(await f()); i++) await new Promise((r) => setTimeout(r, 50));
}

/** primary linked, nothing pending on either side, the secondary consistent. */
export function drained(p: Site, s: Site): Promise<void> {
  return until(async () => {
    const [a, b] = [await vol(p), await vol(s)];
    return Boolean(a && b && a.role === 'primary' && a.link === 'connected' && a.backlogBytes === 0 && !a.resyncing &&
      b.consistent && !b.resyncing && b.backlogBytes === 0);
  });
}

export async function action(s: Site, act: string, body: object = {}): Promise<string> {
  const token = fs.readFileSync(path.join(s.dir, `state-${s.name}`, 'api.token'), 'utf8').trim();
  const r = await fetch(`http://127.0.0.1:${s.api}/api/v1/volumes/db/${act}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  const j = (await r.json()) as { message?: string; error?: string };
  if (!r.ok) throw new Error(`${act} on ${s.name}: ${j.error}`);
  return j.message!;
}
