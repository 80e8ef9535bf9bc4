// The `offsite` command.
import { Command } from 'commander';
import { ConfigError, defaultConfigPath, loadConfig } from '../config/config.js';
import { formatBytes } from '../config/units.js';
import { createLogger } from '../log/log.js';
import { Daemon } from '../node/daemon.js';
import { formatListenAddress } from '../nbd/server.js';
import { ensureIdentity, ensureToken, readToken } from '../link/identity.js';
import { fetchStatus, formatStatus } from './status.js';

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
    const log = createLogger();
    const config = loadConfig(configPath(opts));
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
    process.on('SIGINT', () => onSignal('SIGINT'));
    process.on('SIGTERM', () => onSignal('SIGTERM'));
    // A bug, not an operating condition: say what it was, then stop. Everything
    // durable is safe (recovery at the next start is the same as after kill -9).
    const fatal = (kind: string) => (e: unknown): void => {
      const err = e instanceof Error ? e : new Error(String(e));
      log.fatal({ stack: err.stack }, `internal error (${kind}): ${err.message}; exiting; restart the daemon, recovery will bring every volume back to its last durable state`);
      process.exit(70);
    };
    process.on('unhandledRejection', fatal('unhandled rejection'));
    process.on('uncaughtException', fatal('uncaught exception'));
    await daemon.start();
  });

configOption(program.command('init'))
  .description("create this node's identity (key pair, self-signed certificate) and API token; prints the fingerprint last")
  .action(async (opts: { config?: string }) => {
    const c = loadConfig(configPath(opts));
    const { identity, created } = await ensureIdentity(c.state, c.node);
    const token = ensureToken(c.state);
    console.log(created ? `created the identity of node ${c.node} in ${c.state}` : `node ${c.node} already has an identity in ${c.state}`);
    if (token.created) console.log(`created an API token (print it with: offsite token -c ${c.file})`);
    console.log('give this fingerprint to the peer (peers: NAME: fingerprint:):');
    console.log(identity.fingerprint);
  });

configOption(program.command('token'))
  .description('print the API bearer token created by init')
  .action((opts: { config?: string }) => {
    const c = loadConfig(configPath(opts));
    console.log(readToken(c.state));
  });

configOption(program.command('status'))
  .description("this node's volumes: role, link, backlog, lag, consistency")
  .option('--json', 'print JSON (fields: node, volumes[].name, role, peer, link, backlogBytes, lagSeconds, consistent, ...)')
  .action(async (opts: { config?: string; json?: boolean }) => {
    const c = loadConfig(configPath(opts));
    const s = await fetchStatus(c);
    console.log(opts.json ? JSON.stringify(s, null, 2) : formatStatus(s));
  });

configOption(program.command('config'))
  .description('check the config file and print what it describes')
  .action((opts: { config?: string }) => {
    const c = loadConfig(configPath(opts));
    console.log(`node ${c.node}, state ${c.state}, NBD ${formatListenAddress(c.nbd)}`);
    for (const v of c.volumes) {
      console.log(`  volume ${v.name}: ${v.role}, ${v.path}${v.size !== undefined ? `, ${formatBytes(v.size)}` : ''}`);
    }
    console.log('config ok');
  });

program.parseAsync(process.argv).catch((e: unknown) => {
  const msg = e instanceof ConfigError || e instanceof Error ? e.message : String(e);
  process.stderr.write(`offsite: ${msg}\n`);
  process.exit(e instanceof ConfigError ? 2 : 1);
});
