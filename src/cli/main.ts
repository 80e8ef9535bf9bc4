// The `offsite` command.
import { Command } from 'commander';
import { defaultConfigPath, loadClientConfig } from '../config/client.js';
import { formatBytes, formatDuration, parseDuration } from '../units/units.js';
import fs from 'node:fs';
import path from 'node:path';
import { formatStatus, selectVolumes, verifyCell } from './status.js';
import { callAction, callReload, fetchStatus, getJson } from './api-client.js';
import type { CheckpointInfo, HistoryInfo } from '../contract/actions.js';
import { formatHistory } from './history.js';

// Commands that only talk to the daemon's API load only what they need: the daemon
// (fastify, net-snmp, zstd workers...) is imported by the commands that run it, so
// `offsite status` or `offsite promote` answers at once (bench/cli.ts measures it).

const program = new Command();
program
  .name('offsite')
  .description('Disaster-recovery block mirroring: an NBD disk here, an always-consistent copy at another site.')
  .version('0.1.0');

const configOption = (cmd: Command): Command =>
  cmd.option('-c, --config <file>', 'config file (default ./offsite.yaml or $OFFSITE_CONFIG)');

function configPath(opts: { config?: string }): string {
  return opts.config ?? defaultConfigPath();
}

configOption(program.command('daemon'))
  .description('run this node in the foreground until SIGINT/SIGTERM')
  .action(async (opts: { config?: string }) => {
    const { createLogger } = await import('../log/log.js');
    const { Daemon } = await import('../node/daemon.js');
    const log = createLogger();
    const config = (await import('../config/config.js')).loadConfig(configPath(opts));
    const daemon = new Daemon(config, log);
    let signals = 0;
    const onSignal = (sig: string): void => {
      if (++signals > 1) {
        log.warn(`${sig} again: exiting without waiting`);
        process.exit(1);
      }
      log.info(`${sig} received`);
      daemon.stop().then(() => process.exit(0), (e: Error) => {
        log.error(`stop failed: ${e.message}`);
        process.exit(1);
      });
    };
    process.on('SIGHUP', () => {
      try {
        daemon.reload();
      } catch (e) {
        log.error(`SIGHUP: the config was not reloaded: ${(e as Error).message}`);
      }
    });
    process.on('SIGINT', () => onSignal('SIGINT'));
    process.on('SIGTERM', () => onSignal('SIGTERM'));
    // A bug, not an operating condition: say what it was, then stop. Everything
    // durable is safe (recovery at the next start is the same as after kill -9).
    const fatal = (kind: string) => (e: unknown): void => {
      const err = e instanceof Error ? e : new Error(String(e));
      log.fatal({ stack: err.stack },
        `internal error (${kind}): ${err.message}; exiting; restart the daemon, recovery will bring every volume back to its last durable state`);
      process.exit(70);
    };
    // A broken invariant (docs/INVARIANTS.md) stops the daemon where it is found, before
    // any catch on the way up can retry past it and write something wrong.
    const { onViolation } = await import('../invariants/assert.js');
    onViolation((e) => fatal('broken invariant')(e));
    process.on('unhandledRejection', fatal('unhandled rejection'));
    process.on('uncaughtException', fatal('uncaught exception'));
    await daemon.start();
  });

configOption(program.command('init'))
  .description("create this node's identity (key pair, self-signed certificate) and API token; prints the fingerprint last")
  .action(async (opts: { config?: string }) => {
    const { ensureIdentity, ensureToken } = await import('../link/identity.js');
    const c = (await import('../config/config.js')).loadConfig(configPath(opts));
    const { identity, created } = await ensureIdentity(c.state, c.node);
    const token = ensureToken(c.state);
    console.log(created ? `created the identity of node ${c.node} in ${c.state}` : `node ${c.node} already has an identity in ${c.state}`);
    if (token.created) console.log(`created an API token (print it with: offsite token -c ${c.file})`);
    console.log('give this fingerprint to the peer (peers: NAME: fingerprint:):');
    console.log(identity.fingerprint);
  });

configOption(program.command('token'))
  .description('print the API bearer token created by init')
  .action(async (opts: { config?: string }) => {
    const { readToken } = await import('../link/identity.js');
    const c = (await import('../config/config.js')).loadConfig(configPath(opts));
    console.log(readToken(c.state));
  });

configOption(program.command('status [volume...]'))
  .description("this node's volumes: role, link, backlog, lag, consistency (VOLUME may be a pattern: 'erp*')")
  .option('--json', 'print JSON (fields: node, volumes[].name, role, peer, link, backlogBytes, lagSeconds, consistent, ...)')
  .option('--lagging [seconds]',
    'only volumes that need attention: lag above SECONDS (default 60), link down, paused, inconsistent, resyncing or on the bitmap')
  .option('--sort <key>', 'name (default), lag or backlog (worst first)', 'name')
  .action(async (names: string[], opts: { config?: string; json?: boolean; lagging?: string | boolean; sort: string }) => {
    if (!['name', 'lag', 'backlog'].includes(opts.sort)) throw new Error(`--sort ${opts.sort}: sort by name, lag or backlog`);
    const laggingOver = opts.lagging === undefined ? null : typeof opts.lagging === 'string' ? parseDuration(opts.lagging) : 60;
    const view = { names, laggingOver, sort: opts.sort as 'name' | 'lag' | 'backlog' };
    const c = await loadClientConfig(configPath(opts));
    const s = await fetchStatus(c);
    const selected = names.length || laggingOver !== null || opts.sort !== 'name';
    console.log(opts.json ? JSON.stringify(selected ? { ...s, volumes: selectVolumes(s, view) } : s, null, 2) : formatStatus(s, view));
  });

/** Runs an action on the daemon and prints its answer (or exits 1 with its refusal). */
async function act(opts: { config?: string }, volume: string, action: string, body: Record<string, unknown> = {}): Promise<void> {
  const c = await loadClientConfig(configPath(opts));
  const res = await callAction(c, volume, action, body);
  console.log(res.message);
}

const checkpoint = program.command('checkpoint').description('freeze the secondary\'s image at a flush point (served read-only as VOLUME@checkpoint)');
configOption(checkpoint.command('create <volume>'))
  .description('hold a checkpoint of VOLUME (on the node with its secondary); replication goes on into the receive log')
  .option('--label <label>', 'a name for it (default: manual-<time>)')
  .option('--hold <duration>', 'release it by itself after this long (30m, 2h); default: until released')
  .option('--at <time>', 'a past flush point from the history: the newest at or before TIME (2026-12-03T10:14:00Z, "15m ago")')
  .action((volume: string, opts: { config?: string; label?: string; hold?: string; at?: string }) =>
    act(opts, volume, 'checkpoint', { label: opts.label, hold: opts.hold, at: opts.at }));
configOption(checkpoint.command('release <volume>'))
  .description('release the checkpoint of VOLUME: the replica catches up at once')
  .action((volume: string, opts: { config?: string }) => act(opts, volume, 'checkpoint-release'));
configOption(checkpoint.command('list'))
  .description('the checkpoints this node holds')
  .option('--json', 'print JSON')
  .action(async (opts: { config?: string; json?: boolean }) => {
    const c = await loadClientConfig(configPath(opts));
    const { checkpoints } = await getJson<{ checkpoints: CheckpointInfo[] }>(c, '/api/v1/checkpoints');
    if (opts.json) return console.log(JSON.stringify(checkpoints, null, 2));
    if (checkpoints.length === 0) return console.log('no checkpoints held');
    for (const cp of checkpoints) {
      console.log(`${cp.volume}  "${cp.label}"  taken ${new Date(cp.createdAt).toISOString()}  at record ${cp.appliedSeq}  ` +
        `${cp.holdUntil ? `held until ${new Date(cp.holdUntil).toISOString()}` : 'held until released'}  export ${cp.export}`);
    }
  });

configOption(program.command('history <volume>'))
  .description('the restore points of VOLUME\'s history (on the node with its secondary): every past flush point that opens')
  .option('--json', 'print JSON')
  .action(async (volume: string, opts: { config?: string; json?: boolean }) => {
    const c = await loadClientConfig(configPath(opts));
    const h = await getJson<HistoryInfo>(c, `/api/v1/volumes/${encodeURIComponent(volume)}/restore-points`);
    if (opts.json) return console.log(JSON.stringify(h, null, 2));
    console.log(formatHistory(h));
  });

const drill = program.command('drill').description('a DR drill: a writable copy-on-write VOLUME@drill over a checkpoint, thrown away at stop');
configOption(drill.command('start <volume>'))
  .description('start a drill of VOLUME (on the node with its secondary); takes a checkpoint if none is held')
  .option('--at <time>', 'over a past flush point from the history: the newest at or before TIME (2026-12-03T10:14:00Z, "15m ago")')
  .action((volume: string, opts: { config?: string; at?: string }) => act(opts, volume, 'drill-start', { at: opts.at }));
configOption(drill.command('stop <volume>'))
  .description('stop the drill of VOLUME and throw its writes away')
  .action((volume: string, opts: { config?: string }) => act(opts, volume, 'drill-stop'));

configOption(program.command('verify <volume>'))
  .description('online verify (on the primary\'s node): compare every region with the peer by hash, against the same flush point, while replication runs')
  .option('--repair', 'resync the regions that differ')
  .option('--no-wait', 'start it and return (offsite status shows the progress)')
  .action(async (volume: string, opts: { config?: string; repair?: boolean; wait: boolean }) => {
    const c = await loadClientConfig(configPath(opts));
    const res = await callAction(c, volume, 'verify', { repair: opts.repair === true });
    console.log(res.message);
    if (!opts.wait) return;
    for (;;) {
      await new Promise((r) => setTimeout(r, 250));
      const v = (await fetchStatus(c)).volumes.find((x) => x.name === volume);
      const run = v?.verify;
      if (!v || !run) throw new Error(`the daemon no longer reports a verify of ${volume}`);
      if (run.state === 'running') {
        if (process.stdout.isTTY) process.stdout.write(`\r${verifyCell(v)}\x1b[K`);
        continue;
      }
      if (process.stdout.isTTY) process.stdout.write('\r\x1b[K');
      console.log(`verify of ${volume} ${run.state === 'done' ? 'done' : 'failed'}: ${run.message}`);
      if (run.state === 'failed' || (run.differingRegions.length > 0 && !run.repair)) process.exitCode = 3;
      return;
    }
  });

configOption(program.command('reload'))
  .description('the daemon reads its config file again (as SIGHUP does) and says what it changed: link rates, schedules, weights at once; ' +
    'volumes new to the file are opened and served; volumes set aside are tried again')
  .action(async (opts: { config?: string }) => {
    const c = await loadClientConfig(configPath(opts));
    console.log((await callReload(c)).message);
  });

configOption(program.command('pause <volume>'))
  .description('stop shipping VOLUME (on its primary\'s node); the host keeps writing, the journal keeps the backlog')
  .action((volume: string, opts: { config?: string }) => act(opts, volume, 'pause'));
configOption(program.command('resume <volume>'))
  .description('ship VOLUME again after a pause')
  .action((volume: string, opts: { config?: string }) => act(opts, volume, 'resume'));

configOption(program.command('promote <volume>'))
  .description('failover: make this node\'s secondary of VOLUME the primary (read-write); refused while its primary is connected or the ' +
    'replica is not consistent. A consistency group\'s name promotes every member at one group point')
  .option('--force', 'promote even so (two primaries, or an image that is not a flush point)')
  .option('--at <time>', 'roll back to a past flush point from the history first: the newest at or before TIME (after ransomware, a bad upgrade); ' +
    'for a group, the newest group point at or before TIME that every member\'s history holds')
  .action((volume: string, opts: { config?: string; force?: boolean; at?: string }) =>
    act(opts, volume, 'promote', { force: opts.force === true, ...(opts.at === undefined ? {} : { at: opts.at }) }));

configOption(program.command('demote <volume>'))
  .description('make this node\'s VOLUME a secondary; writes its peer never received are replaced by the peer\'s data')
  .option('--discard-my-data', 'also give up this side\'s history: resolves a split brain in favour of the peer')
  .action((volume: string, opts: { config?: string; discardMyData?: boolean }) => act(opts, volume, 'demote', { discardMyData: opts.discardMyData === true }));

configOption(program.command('plan [volume]'))
  .description('link sizing: the rate that keeps the RPO under a target, from the write history the daemon keeps (or a CSV trace), beside the peak and average')
  .requiredOption('--rpo <duration>', 'the most the peer may lag behind (15m, 1h)')
  .option('--trace <file>', 'a CSV of time,bytes (seconds or ISO time; bytes written since the line before) instead of the history')
  .action(async (volume: string | undefined, opts: { config?: string; rpo: string; trace?: string }) => {
    const { readHistory } = await import('../journal/history.js');
    const { historyIntervals, parseTrace, planLink } = await import('../plan/plan.js');
    const { formatRate } = await import('../rate/rate.js');
    const rpo = parseDuration(opts.rpo);
    let intervals;
    let source: string;
    if (opts.trace) {
      intervals = parseTrace(fs.readFileSync(opts.trace, 'utf8'), opts.trace);
      source = opts.trace;
    } else {
      if (!volume) throw new Error('name a volume (its history is read), or give --trace FILE');
      const c = await loadClientConfig(configPath(opts));
      const file = path.join(c.state, 'volumes', volume, 'history.csv');
      const rows = readHistory(file);
      if (rows.length === 0) throw new Error(`no write history for ${volume} yet in ${file} (the daemon records one line a minute on the primary)`);
      intervals = historyIntervals(rows);
      source = `the history of ${volume} (${rows.length} minutes from ${rows[0]!.minute})`;
    }
    const p = planLink(intervals, rpo);
    const at = (secs: number): string => formatDuration(secs);
    console.log(`from ${source}: ${formatBytes(p.totalBytes)} written over ${at(p.seconds)}`);
    console.log(`  peak write rate     ${formatRate(p.peakBytesPerSecond)}`);
    console.log(`  average write rate  ${formatRate(p.averageBytesPerSecond)}`);
    console.log(`  link needed for an RPO of ${at(rpo)}: ${formatRate(p.neededBytesPerSecond)} ` +
      `(${(p.neededBytesPerSecond / Math.max(p.averageBytesPerSecond, 1e-9)).toFixed(2)}x the average; worst lag ${at(p.worstLagSeconds)}, ` +
      `${at(p.worstLagAt)} in)`);
    console.log('  (raw bytes: compression and coalescing lower what the link carries)');
  });

configOption(program.command('top'))
  .description('the front panel: a live full-screen view of this node\'s volumes (q quits)')
  .option('--interval <duration>', 'refresh every (default 1s)', '1s')
  .action(async (opts: { config?: string; interval: string }) => {
    const { runTop } = await import('./top.js');
    const c = await loadClientConfig(configPath(opts));
    await runTop(c, Math.max(200, parseDuration(opts.interval) * 1000));
  });

configOption(program.command('config'))
  .description('check the config file and print what it describes')
  .action(async (opts: { config?: string }) => {
    const c = (await import('../config/config.js')).loadConfig(configPath(opts));
    const { formatListenAddress } = await import('../export/listen-address.js');
    console.log(`node ${c.node}, state ${c.state}, NBD ${formatListenAddress(c.nbd)}`);
    for (const v of c.volumes) {
      console.log(`  volume ${v.name}: ${v.role}, ${v.path}${v.size !== undefined ? `, ${formatBytes(v.size)}` : ''}`);
    }
    console.log('config ok');
  });

program.parseAsync(process.argv).catch((e: unknown) => {
  const msg = e instanceof Error ? e.message : String(e);
  process.stderr.write(`offsite: ${msg}\n`);
  process.exit(e instanceof Error && e.name === 'ConfigError' ? 2 : 1);
});
