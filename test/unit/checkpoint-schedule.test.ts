// Scheduled checkpoints on a clock the test controls: they fire on time, once per
// time however late the tick, only on a secondary, and a bad cron expression in the
// config is reported with its line.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CheckpointSchedule } from '../../src/checkpoint/schedule.js';
import { ConfigError, parseConfig } from '../../src/config/config.js';
import { silentLogger } from '../../src/log/log.js';
import { RoleChanges, type RoleHost } from '../../src/node/roles.js';

const at = (day: number, h: number, m = 0, s = 0): number => new Date(2026, 10, day, h, m, s).getTime();

test('a nightly schedule fires at 02:00, once, and again the next night', () => {
  const sch = new CheckpointSchedule([{ cron: '0 2 * * *', holdSeconds: 7200, label: 'nightly' }], at(26, 1));
  assert.deepEqual(sch.due(at(26, 1, 59, 59)), []);
  assert.deepEqual(sch.due(at(26, 2)), [{ cron: '0 2 * * *', holdSeconds: 7200, label: 'nightly' }]);
  assert.deepEqual(sch.due(at(26, 2, 0, 30)), [], 'once per time');
  assert.equal(sch.nextTimes[0]!.at, at(27, 2));
  // The daemon was busy (or stopped) past several times: one checkpoint, not a burst.
  assert.equal(sch.due(at(29, 5)).length, 1);
  assert.deepEqual(sch.due(at(29, 6)), []);
});

test('the daemon tick takes scheduled checkpoints on a secondary only, with their label and hold', async () => {
  const cfg = (name: string) => ({ name, peer: 'site-a', checkpoints: [{ cron: '*/5 * * * *', hold: 600, label: 'five' }] });
  const daemon = {
    entries: [
      { config: cfg('db'), role: 'secondary', replica: { checkpoint: null } },
      { config: cfg('logs'), role: 'primary', replica: null },
    ],
  } as unknown as RoleHost;
  const roles = new RoleChanges(daemon, silentLogger);
  const taken: Array<[string, unknown, number]> = [];
  roles.createCheckpoint = (name, opts, now) => {
    taken.push([name, opts, now!]);
    return Promise.resolve({ volume: name, message: '' });
  };
  roles.tick(at(26, 10, 1));
  roles.tick(at(26, 10, 4, 59));
  assert.deepEqual(taken, []);
  roles.tick(at(26, 10, 5));
  assert.deepEqual(taken, [['db', { label: 'five', holdSeconds: 600 }, at(26, 10, 5)]]);
  roles.tick(at(26, 10, 5, 1));
  assert.equal(taken.length, 1);
});

test('a bad cron expression in the config names its line', () => {
  const text = `node: a
state: ./s
nbd: 127.0.0.1:1
peers:
  b: { address: "127.0.0.1:2" }
volumes:
  db:
    path: ./db.img
    size: 1MiB
    role: secondary
    peer: b
    checkpoints:
      - { cron: "61 * * * *", hold: 2h, label: nightly }
`;
  assert.throws(() => parseConfig(text, 'offsite.yaml'), (e: unknown) => e instanceof ConfigError &&
    /offsite.yaml:13: .*cron.*"61 \* \* \* \*" is not a cron expression/.test((e as Error).message));
  const ok = parseConfig(text.replace('61 * * * *', '0 2 * * *'), 'offsite.yaml');
  assert.deepEqual(ok.volumes[0]!.checkpoints, [{ cron: '0 2 * * *', hold: 7200, label: 'nightly' }]);
});
