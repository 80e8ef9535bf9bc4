// The Hello check: matching volumes pair up; mismatches are refused with reasons.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkHello, encodeHello, type Hello, type HelloVolume } from '../../src/link/hello.js';

const vol = (over: Partial<HelloVolume> = {}): HelloVolume => ({ name: 'db', uuid: 'u1', size: 1 << 30, role: 'primary', generation: ['g1'], durableSeq: 0,
  logBytes: 1 << 30, round: 0, ...over });
const hello = (over: Partial<Hello> = {}): Buffer => encodeHello({ node: 'site-b', protocol: 1, volumes: [
  vol({ role: 'secondary', durableSeq: 17 })], ...over });
const refused = (r: ReturnType<typeof checkHello>): string => (r.ok ? 'accepted' : `${r.code}: ${r.message}`);

test('a matching pair is accepted with the peer\'s durable point', () => {
  const r = checkHello(hello(), 'site-b', [vol()]);
  assert.ok(r.ok);
  assert.equal(r.pairs[0]!.remote.durableSeq, 17);
});

test('size mismatch, two primaries, unknown volume, other uuid, wrong node, other version', () => {
  assert.match(refused(checkHello(hello({ volumes: [vol({ role: 'secondary', size: 5 })] }), 'site-b', [vol()])),
    /^size: volume db is 1073741824 bytes here and 5 bytes on site-b/);
  assert.match(refused(checkHello(hello({ volumes: [vol()] }), 'site-b', [vol()])), /^two-primaries: .*offsite demote db/);
  assert.match(refused(checkHello(hello({ volumes: [] }), 'site-b', [vol()])), /^unknown-volume: volume db is configured with peer site-b/);
  assert.match(refused(checkHello(hello({ volumes: [vol({ role: 'secondary', uuid: 'u2' })] }), 'site-b', [vol()])), /^uuid: /);
  assert.match(refused(checkHello(hello({ node: 'site-c' }), 'site-b', [vol()])), /^wrong-node: the peer calls itself "site-c"/);
  assert.match(refused(checkHello(hello({ protocol: 3 }), 'site-b', [vol()])),
    /^version: site-b speaks protocol version 3 and this node speaks protocol versions 1..2: no version in common\. Upgrade this node /);
});

test('garbage is refused, not thrown', () => {
  assert.match(refused(checkHello(Buffer.from('{nope'), 'site-b', [vol()])), /^bad-hello: .*not JSON/);
  assert.match(refused(checkHello(Buffer.from('{"node":"site-b","protocol":1,"volumes":[{"name":"db"}]}'), 'site-b', [vol()])),
    /^bad-hello: .*malformed at volumes\.0\./);
  assert.match(refused(checkHello(Buffer.from('[1,2,3]'), 'site-b', [vol()])), /^bad-hello/);
});

test('generations: failover, failback and split brain are told apart', () => {
  // A secondary whose generation is in the primary's history: a normal pair.
  assert.ok(checkHello(hello({ volumes: [vol({ role: 'secondary', generation: ['g1'] })] }), 'site-b', [vol({ generation: ['g2', 'g1'] })]).ok);
  // A secondary that forgot its history (--discard-my-data): accepted, it gets a full compare.
  assert.ok(checkHello(hello({ volumes: [vol({ role: 'secondary', generation: [] })] }), 'site-b', [vol({ generation: ['g2', 'g1'] })]).ok);
  // The secondary took writes the primary never saw: split brain, from either side's view.
  assert.match(refused(checkHello(hello({ volumes: [vol({ role: 'secondary', generation: ['g1b', 'g1'] })] }), 'site-b', [vol({ generation: ['g2', 'g1'] })])),
    /^split-brain: volume db: split brain: the secondary \(site-b\) took writes .*--discard-my-data/);
  assert.match(refused(checkHello(hello({ volumes: [vol({ role: 'primary', generation: ['g2', 'g1'] })] }), 'site-b',
    [vol({ role: 'secondary', generation: ['g1b', 'g1'] })])),
    /^split-brain: .*the secondary \(this node\)/);
  // Two primaries after a failover: the old primary is told to demote itself.
  assert.match(refused(checkHello(hello({ volumes: [vol({ generation: ['g2', 'g1'] })] }), 'site-b', [vol({ generation: ['g1'] })])),
    /^peer-promoted: .*site-b was promoted after this node's last write.*offsite demote db` here/);
  assert.match(refused(checkHello(hello({ volumes: [vol({ generation: ['g1'] })] }), 'site-b', [vol({ generation: ['g2', 'g1'] })])),
    /^two-primaries: .*this node was promoted.*on site-b/);
  // Both primaries wrote apart: split brain.
  assert.match(refused(checkHello(hello({ volumes: [vol({ generation: ['g2', 'g1'] })] }), 'site-b', [vol({ generation: ['g1b', 'g1'] })])),
    /^split-brain: volume db: split brain: primary on both nodes/);
});
