// GET /metrics parses as Prometheus text (every line checked against the exposition
// format) and carries the figures operators alert on, with the values status has.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { TestDaemon } from '../helpers/daemon.js';
import { startPair } from '../helpers/pair.js';
import { must } from '../helpers/run.js';
import { cli } from '../helpers/cli.js';

type Samples = Map<string, number>;

/** Parses the text exposition format strictly: HELP and TYPE lines, then `name{labels} value`. */
function parse(text: string): { samples: Samples; types: Map<string, string> } {
  const samples: Samples = new Map();
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const t = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (t) {
      assert.ok(!types.has(t[1]!), `TYPE twice for ${t[1]}`);
      types.set(t[1]!, t[2]!);
      continue;
    }
    if (/^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+$/.test(line)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.]+(?:e[+-]?[0-9]+)?|NaN|[+-]Inf)$/.exec(line);
    assert.ok(m, `not Prometheus text: ${JSON.stringify(line)}`);
    samples.set(`${m[1]}${m[2] ?? ''}`, Number(m[3]));
  }
  return { samples, types };
}

async function scrape(d: TestDaemon): Promise<ReturnType<typeof parse>> {
  const res = await fetch(`http://127.0.0.1:${d.apiPort}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return parse(await res.text());
}

test('/metrics: Prometheus text with backlog, lag, host and wire bytes, link, sync and checkpoint state', async () => {
  const p = await startPair({ size: '32MiB' });
  try {
    await p.drained(); // the first sync ends first: writes during it are tracked by the bitmap, not journaled
    await must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x3c 0 4M', '-c', 'flush', p.a.uri('db')]);
    await p.drained();
    assert.equal((await cli(p.b, 'checkpoint', 'create', 'db', '--label', 'm')).code, 0);
    const a = await scrape(p.a);
    const b = await scrape(p.b);
    const v = '{volume="db"}';
    assert.equal(a.types.get('offsite_volume_backlog_bytes'), 'gauge');
    assert.equal(a.types.get('offsite_volume_host_bytes_total'), 'counter');
    assert.equal(a.samples.get(`offsite_volume_backlog_bytes${v}`), 0);
    assert.equal(a.samples.get(`offsite_volume_lag_seconds${v}`), 0);
    assert.equal(a.samples.get(`offsite_volume_link_up${v}`), 1);
    assert.equal(b.samples.get(`offsite_volume_link_up${v}`), 1);
    assert.equal(a.samples.get(`offsite_volume_size_bytes${v}`), 32 << 20);
    assert.equal(b.samples.get(`offsite_volume_size_bytes${v}`), 32 << 20);
    assert.ok(a.samples.get(`offsite_volume_host_bytes_total${v}`)! >= 4 << 20);
    // The 4 MiB went as journal records; a pattern that compresses to almost nothing on the wire.
    const records = a.samples.get(`offsite_volume_record_bytes_total${v}`)!;
    const wire = a.samples.get(`offsite_volume_wire_bytes_total${v}`)!;
    assert.ok(records >= 4 << 20, String(records));
    assert.ok(wire > 0 && wire < records / 10, `wire ${wire} for ${records} record bytes`);
    assert.equal(a.types.get('offsite_volume_record_bytes_total'), 'counter');
    assert.ok(a.samples.has(`offsite_volume_coalesced_bytes_total${v}`));
    assert.ok(a.samples.get(`offsite_volume_link_rtt_seconds${v}`)! >= 0);
    assert.equal(a.samples.get(`offsite_volume_resync_active${v}`), 0);
    assert.equal(b.samples.get(`offsite_volume_consistent${v}`), 1);
    assert.equal(a.samples.get(`offsite_volume_checkpoint_held${v}`), 0);
    assert.equal(b.samples.get(`offsite_volume_checkpoint_held${v}`), 1);
    assert.ok(b.samples.get(`offsite_volume_checkpoint_created_seconds${v}`)! > 1.7e9);
    assert.ok([...a.samples.keys()].some((k) => k.startsWith('offsite_volume_info{') && k.includes('role="primary"')));
    assert.ok([...b.samples.keys()].some((k) => k.startsWith('offsite_volume_info{') && k.includes('role="secondary"')));
    // Each peer of the volume, with a peer label (docs/PEERS.md): site-a's secondary, site-b's primary.
    const [pa, pb] = ['{volume="db",peer="site-b"}', '{volume="db",peer="site-a"}'];
    assert.equal(a.types.get('offsite_peer_backlog_bytes'), 'gauge');
    assert.deepEqual([a.samples.get(`offsite_peer_link_up${pa}`), a.samples.get(`offsite_peer_backlog_bytes${pa}`),
      a.samples.get(`offsite_peer_lag_seconds${pa}`)], [1, 0, 0]);
    const acked = a.samples.get(`offsite_peer_acked_seq${pa}`)!;
    assert.ok(acked > 0 && acked === b.samples.get(`offsite_peer_acked_seq${pb}`), `site-a: site-b acked ${acked}`);
    assert.equal(b.samples.get(`offsite_peer_link_up${pb}`), 1);
    assert.ok(a.samples.has('offsite_process_resident_memory_bytes'));
  } finally {
    await p.stop();
  }
});
