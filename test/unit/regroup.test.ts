// A group's members changed at a reload (src/node/regroup.ts): refused, the grouping left
// as it was and nothing let go, while a member is not served here or a checkpoint or
// drill is held on one; the reason logged. (The regroup itself, with real daemons at both
// sites: test/integration/regroup.test.ts.)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { regroupVolumes, type RegroupHost } from '../../src/node/regroup.js';
import { createLogger } from '../../src/log/log.js';

function host(entries: Array<{ name: string; checkpoint?: boolean; drill?: boolean }>, configured: string[],
  groups: Array<{ name: string; members: readonly string[] }> = []): {
  h: RegroupHost; calls: string[]; lines: string[];
} {
  const calls: string[] = [];
  const lines: string[] = [];
  const log = createLogger({ format: 'json', destination: { write: (l: string) => lines.push(l) } as unknown as NodeJS.WritableStream });
  const entry = (e: { name: string; checkpoint?: boolean; drill?: boolean }): unknown => ({
    config: { name: e.name }, replica: e.checkpoint ? { checkpoint: { label: 'nightly' } } : null, drill: e.drill ? {} : null,
    journaled: null, volume: { close: () => Promise.resolve() },
  });
  const h = {
    config: { volumes: configured.map((name) => ({ name, path: `./${name}.img`, peers: [] })), state: '/nonexistent' },
    log,
    entries: entries.map(entry),
    volumes: [],
    registry: { remove: () => undefined },
    links: () => null,
    releaseFolder: () => undefined,
    forget: () => undefined,
    stampStopped: () => Promise.resolve(),
    exclusive: <T>(f: () => Promise<T>): Promise<T> => f(),
    setGroup: (name: string, members: readonly string[] | null) => {
      calls.push(`setGroup ${name} ${members?.join(',') ?? 'none'}`);
      const i = groups.findIndex((g) => g.name === name);
      if (i >= 0) groups.splice(i, 1);
      if (members) groups.push({ name, members });
    },
    groups: () => groups,
    openAgain: (configs: Array<{ name: string }>) => {
      calls.push('openAgain');
      (h as unknown as { entries: unknown[] }).entries.push(...configs.map((c) => entry({ name: c.name })));
      return Promise.resolve();
    },
    unavailable: { has: () => false, remove: () => calls.push('remove'), reopen: () => calls.push('reopen') },
    closeExports: () => {
      calls.push('closeExports');
      return Promise.resolve(0);
    },
  } as unknown as RegroupHost;
  return { h, calls, lines };
}

test('a regroup is refused while a member is not served here: nothing let go, the grouping as it was', async () => {
  const { h, calls, lines } = host([{ name: 'db' }, { name: 'wal' }], ['db', 'wal', 'logs'], [{ name: 'erp', members: ['db', 'wal'] }]);
  const said = await regroupVolumes(h, { group: 'erp', was: ['db', 'wal'], now: ['db', 'wal', 'logs'] });
  assert.match(said, /^consistency group erp: not regrouped: logs is not served here now \(set aside, or let go\): its members stay as they were/);
  assert.deepEqual(calls, []);
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /not regrouped: logs is not served here now/);
});

test('a regroup is refused while a checkpoint or drill is held on a member: release it, then reload', async () => {
  for (const held of [{ checkpoint: true }, { drill: true }]) {
    const { h, calls } = host([{ name: 'db', ...held }, { name: 'wal' }, { name: 'logs' }], ['db', 'wal', 'logs'],
      [{ name: 'erp', members: ['db', 'wal', 'logs'] }]);
    const said = await regroupVolumes(h, { group: 'erp', was: ['db', 'wal', 'logs'], now: ['db', 'logs'] });
    assert.match(said, /^consistency group erp: not regrouped: a checkpoint or drill is held on db: its members stay as they were; release it/);
    assert.deepEqual(calls, [], JSON.stringify(held));
  }
});

test('a regroup starts from the grouping as it is when it runs: one queued behind another of its group lets go the members of both', async () => {
  const all = ['db', 'wal', 'logs', 'mail'];
  const groups = [{ name: 'erp', members: ['db', 'wal'] as readonly string[] }];
  const { h, calls, lines } = host(all.map((name) => ({ name })), all, groups);
  // Two reloads close together, each computed from erp as [db, wal]: logs joins, then mail instead.
  assert.equal(await regroupVolumes(h, { group: 'erp', was: ['db', 'wal'], now: ['db', 'wal', 'logs'] }), 'consistency group erp: regrouped');
  assert.deepEqual(groups, [{ name: 'erp', members: ['db', 'wal', 'logs'] }]);
  calls.length = 0;
  assert.equal(await regroupVolumes(h, { group: 'erp', was: ['db', 'wal'], now: ['db', 'wal', 'mail'] }), 'consistency group erp: regrouped');
  assert.deepEqual(groups, [{ name: 'erp', members: ['db', 'wal', 'mail'] }]);
  assert.equal(calls.filter((c) => c === 'reopen').length, 4, 'logs let go with the others: not left open as a member of no group');
  assert.ok(lines.some((l) => /volumes db, wal, logs, mail: let go .*db, wal, logs → db, wal, mail/.test(l)), lines.join(''));
  // Already as asked: nothing let go.
  calls.length = 0;
  assert.equal(await regroupVolumes(h, { group: 'erp', was: ['db', 'wal'], now: ['db', 'wal', 'mail'] }), 'consistency group erp: already db, wal, mail');
  assert.deepEqual(calls, []);
});

test('a regroup that would put a volume in a second group is refused: nothing let go', async () => {
  const all = ['db', 'wal', 'logs', 'tmp'];
  const groups = [{ name: 'erp', members: ['db', 'wal'] as readonly string[] }, { name: 'crm', members: ['logs', 'tmp'] as readonly string[] }];
  const { h, calls } = host(all.map((name) => ({ name })), all, groups);
  const said = await regroupVolumes(h, { group: 'erp', was: ['db', 'wal'], now: ['db', 'wal', 'logs'] });
  assert.match(said, /^consistency group erp: not regrouped: logs is still a member of another group here: its members stay as they were; reload again/);
  assert.deepEqual(calls, []);
  assert.equal(groups.length, 2);
});
