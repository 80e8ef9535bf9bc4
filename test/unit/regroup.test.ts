// A group's members changed at a reload (src/node/regroup.ts): refused, the grouping left
// as it was and nothing let go, while a member is not served here or a checkpoint or
// drill is held on one; the reason logged. (The regroup itself, with real daemons at both
// sites: test/integration/regroup.test.ts.)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { regroupVolumes, type RegroupHost } from '../../src/node/regroup.js';
import { createLogger } from '../../src/log/log.js';

function host(entries: Array<{ name: string; checkpoint?: boolean; drill?: boolean }>, configured: string[]): {
  h: RegroupHost; calls: string[]; lines: string[];
} {
  const calls: string[] = [];
  const lines: string[] = [];
  const log = createLogger({ format: 'json', destination: { write: (l: string) => lines.push(l) } as unknown as NodeJS.WritableStream });
  const h = {
    config: { volumes: configured.map((name) => ({ name })), state: '/nonexistent' },
    log,
    entries: entries.map((e) => ({
      config: { name: e.name }, replica: e.checkpoint ? { checkpoint: { label: 'nightly' } } : null, drill: e.drill ? {} : null,
    })),
    exclusive: <T>(f: () => Promise<T>): Promise<T> => f(),
    setGroup: (name: string, members: readonly string[] | null) => calls.push(`setGroup ${name} ${members?.join(',') ?? 'none'}`),
    openAgain: () => {
      calls.push('openAgain');
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
  const { h, calls, lines } = host([{ name: 'db' }, { name: 'wal' }], ['db', 'wal', 'logs']);
  const said = await regroupVolumes(h, { group: 'erp', was: ['db', 'wal'], now: ['db', 'wal', 'logs'] });
  assert.match(said, /^consistency group erp: not regrouped: logs is not served here now \(set aside, or let go\): its members stay as they were/);
  assert.deepEqual(calls, []);
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /not regrouped: logs is not served here now/);
});

test('a regroup is refused while a checkpoint or drill is held on a member: release it, then reload', async () => {
  for (const held of [{ checkpoint: true }, { drill: true }]) {
    const { h, calls } = host([{ name: 'db', ...held }, { name: 'wal' }, { name: 'logs' }], ['db', 'wal', 'logs']);
    const said = await regroupVolumes(h, { group: 'erp', was: ['db', 'wal', 'logs'], now: ['db', 'logs'] });
    assert.match(said, /^consistency group erp: not regrouped: a checkpoint or drill is held on db: its members stay as they were; release it/);
    assert.deepEqual(calls, [], JSON.stringify(held));
  }
});
