// The Hello check: matching volumes pair up; mismatches are refused with reasons.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkHello, encodeHello, encodeHelloFrame, type Hello, type HelloVolume } from '../../src/link/hello.js';
import { decodeVolumeHello, encodeVolumeHello } from '../../src/link/hello.js';

const vol = (over: Partial<HelloVolume> = {}): HelloVolume => ({ name: 'db', uuid: 'u1', size: 1 << 30, role: 'primary', generation: ['g1'], durableSeq: 0,
  logBytes: 1 << 30, round: 0, ...over });
const hello = (over: Partial<Hello> = {}): Buffer => encodeHello({ node: 'site-b', protocol: 1, volumes: [
  vol({ role: 'secondary', durableSeq: 17 })], ...over });
/** The link's refusal, else the first volume's conflict (the link is up for the others), else 'accepted'. */
const refused = (r: ReturnType<typeof checkHello>): string => {
  if (!r.ok) return `${r.code}: ${r.message}`;
  const c = r.conflicts[0];
  if (!c) return 'accepted';
  assert.ok(!r.pairs.some((p) => p.local.name === c.volume) && !r.follows.some((p) => p.local.name === c.volume), 'a volume in conflict is not paired');
  return `${c.code}: ${c.message}`;
};

test('a matching pair is accepted with the peer\'s durable point', () => {
  const r = checkHello(hello(), 'site-b', [vol()]);
  assert.ok(r.ok);
  assert.equal(r.pairs[0]!.remote.durableSeq, 17);
});

test('a size mismatch leaves that one volume unpaired, saying both sizes and which side to grow; the others pair', () => {
  const two = [vol(), vol({ name: 'wal', uuid: 'w1' })];
  const check = (size: number) => checkHello(hello({ volumes: [vol({ role: 'secondary', size }), vol({ name: 'wal', uuid: 'w1', role: 'secondary' })] }),
    'site-b', two);
  const smaller = check(5);
  assert.ok(smaller.ok);
  assert.deepEqual(smaller.pairs.map((p) => p.local.name), ['wal']);
  assert.equal(smaller.unavailable.length, 1);
  assert.equal(smaller.unavailable[0]!.name, 'db');
  assert.equal(smaller.unavailable[0]!.resized, true);
  assert.match(smaller.unavailable[0]!.reason,
    /^it is 1\.0 GiB \(1073741824 bytes\) here and 5 B \(5 bytes\) on site-b; the sizes must match: raise its size: on site-b and reload there/);
  const larger = check(2 * 2 ** 30);
  assert.ok(larger.ok);
  assert.match(larger.unavailable[0]!.reason, /and 2\.0 GiB \(2147483648 bytes\) on site-b; the sizes must match: raise its size: here and reload \(docs/);
  const same = check(2 ** 30);
  assert.ok(same.ok);
  assert.deepEqual(same.unavailable, []);
  assert.deepEqual(same.pairs.map((p) => p.local.name), ['db', 'wal']);
});

test('two primaries, other uuid, wrong node, other version', () => {
  assert.match(refused(checkHello(hello({ volumes: [vol()] }), 'site-b', [vol()])), /^two-primaries: .*offsite demote db/);
  assert.match(refused(checkHello(hello({ volumes: [vol({ role: 'secondary', uuid: 'u2' })] }), 'site-b', [vol()])), /^uuid: /);
  assert.match(refused(checkHello(hello({ node: 'site-c' }), 'site-b', [vol()])), /^wrong-node: the peer calls itself "site-c"/);
  assert.match(refused(checkHello(hello({ protocol: 5 }), 'site-b', [vol()])),
    /^version: site-b speaks protocol version 5 and this node speaks protocol versions 1..4: no version in common\. Upgrade this node /);
});

test('a conflict on one volume leaves it unpaired, with its reason; the link pairs the others (both sides find it)', () => {
  // db: a split brain (both primaries wrote apart); wal and logs: a normal pair.
  const remote = [vol({ generation: ['g1b', 'g1'] }), vol({ name: 'wal', uuid: 'u9', role: 'secondary' }), vol({ name: 'logs', uuid: 'u8' })];
  const local = [vol({ generation: ['g2', 'g1'] }), vol({ name: 'wal', uuid: 'u9' }), vol({ name: 'logs', uuid: 'u8', role: 'secondary' })];
  const here = checkHello(hello({ volumes: remote }), 'site-b', local);
  assert.ok(here.ok);
  assert.deepEqual(here.pairs.map((p) => p.local.name), ['wal', 'logs']);
  assert.deepEqual(here.conflicts.map((c) => [c.volume, c.code]), [['db', 'split-brain']]);
  assert.match(here.conflicts[0]!.message, /^volume db: split brain: primary on both nodes, .*offsite demote db --discard-my-data/);
  // The peer's view of the same two Hellos: the same volume, the same code.
  const there = checkHello(encodeHello({ node: 'site-a', protocol: 1, volumes: local }), 'site-a', remote);
  assert.ok(there.ok);
  assert.deepEqual(there.pairs.map((p) => p.local.name), ['wal', 'logs']);
  assert.deepEqual(there.conflicts.map((c) => [c.volume, c.code]), [['db', 'split-brain']]);
  // Every kind of conflict is the volume's, never the link's.
  for (const [theirs, ours] of [
    [vol({ role: 'primary' }), vol()], [vol({ role: 'secondary' }), vol({ role: 'secondary' })], [vol({ role: 'secondary', uuid: 'u2' }), vol()],
  ] as const) {
    const r = checkHello(hello({ volumes: [theirs, remote[1]!] }), 'site-b', [ours, local[1]!]);
    assert.ok(r.ok && r.conflicts.length === 1 && r.pairs.length === 1, refused(r));
  }
});

test('garbage is refused, not thrown', () => {
  assert.match(refused(checkHello(Buffer.from('{nope'), 'site-b', [vol()])), /^bad-hello: .*not JSON/);
  assert.match(refused(checkHello(Buffer.from('{"node":"site-b","protocol":1,"volumes":[{"name":"db"}]}'), 'site-b', [vol()])),
    /^bad-hello: .*malformed at volumes\.0\./);
  assert.match(refused(checkHello(Buffer.from('[1,2,3]'), 'site-b', [vol()])), /^bad-hello/);
});

test('generations: failover, failback and split brain are told apart', () => {
  // A secondary whose generation is in the primary's history: a normal pair.
  const primaryG2 = [vol({ generation: ['g2', 'g1'] })];
  assert.equal(refused(checkHello(hello({ volumes: [vol({ role: 'secondary', generation: ['g1'] })] }), 'site-b', primaryG2)), 'accepted');
  // A secondary that forgot its history (--discard-my-data): accepted, it gets a full compare.
  assert.equal(refused(checkHello(hello({ volumes: [vol({ role: 'secondary', generation: [] })] }), 'site-b', primaryG2)), 'accepted');
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

test('three sites: two secondaries of a set meet idle; a secondary of a newer primary refuses the old one; another journal is followed', () => {
  const inSet = { inSet: () => true };
  const bothSecondary = hello({ volumes: [vol({ role: 'secondary', durableSeq: 9 })] });
  // Both follow a third (the primary): the link carries nothing of the volume, and is no error.
  const idle = checkHello(bothSecondary, 'site-b', [vol({ role: 'secondary', durableSeq: 5 })], inSet);
  assert.ok(idle.ok);
  assert.deepEqual([idle.pairs.length, idle.follows.length], [0, 0]);
  // Without a set (one peer each) that is still a refusal.
  assert.match(refused(checkHello(bothSecondary, 'site-b', [vol({ role: 'secondary' })])), /^two-secondaries: /);

  // site-b was promoted after g1 (its generation g2); site-c follows it. The old primary (g1) meets site-c.
  const follower = vol({ role: 'secondary', generation: ['g2', 'g1'], durableSeq: 40 });
  const atOld = checkHello(encodeHello({ node: 'site-c', protocol: 1, volumes: [follower] }), 'site-c', [vol({ generation: ['g1'] })]);
  assert.match(refused(atOld), /^peer-promoted: volume db: site-c follows a primary promoted after this node's last write .*offsite demote db/);
  assert.equal(atOld.ok && atOld.conflicts[0]!.volume, 'db', 'the old primary learns which volume may fail back (failback: auto)');
  const atFollower = checkHello(encodeHello({ node: 'site-a', protocol: 1, volumes: [vol({ generation: ['g1'] })] }), 'site-a', [follower]);
  assert.match(refused(atFollower), /^old-primary: volume db: site-a is primary of an older generation \(g1\).*offsite demote db` on site-a/);
  // The old primary wrote while apart (g3 after g1): neither holds the other's current generation: split brain.
  assert.match(refused(checkHello(encodeHello({ node: 'site-c', protocol: 1, volumes: [follower] }), 'site-c', [vol({ generation: ['g3', 'g1'] })])),
    /^split-brain: /);

  // The secondary's receive log holds records of another journal (the stream it names): nothing flows, it starts again.
  const primary = vol({ generation: ['g2', 'g1'], stream: '00000000000000bb' });
  const other = hello({ volumes: [vol({ role: 'secondary', generation: ['g1'], durableSeq: 40, stream: '00000000000000aa' })] });
  const follow = checkHello(other, 'site-b', [primary]);
  assert.ok(follow.ok);
  assert.deepEqual([follow.pairs.length, follow.follows.map((f) => f.remote.stream)], [0, ['00000000000000aa']]);
  // The same journal, or a new replica (nothing received), or a side of a release before streams: paired as before.
  for (const s of [
    vol({ role: 'secondary', durableSeq: 40, stream: '00000000000000bb' }),
    vol({ role: 'secondary', durableSeq: 0, round: 0, stream: '00000000000000aa' }),
    vol({ role: 'secondary', durableSeq: 40 }),
  ]) {
    const r = checkHello(hello({ volumes: [{ ...s, generation: ['g1'] }] }), 'site-b', [primary]);
    assert.ok(r.ok);
    assert.deepEqual([r.pairs.length, r.follows.length], [1, 0], JSON.stringify(s));
  }
});

test('a volume the peer could not open: listed with why, it is not paired and the link takes the others; one not in its config, the same', () => {
  const wal = vol({ name: 'wal', uuid: 'u9' });
  const r = checkHello(hello({ unavailable: [{ name: 'wal', reason: 'open ./gone/wal.img: ENOENT' }] }), 'site-b', [vol(), wal]);
  assert.ok(r.ok, refused(r));
  assert.deepEqual(r.pairs.map((p) => p.local.name), ['db']);
  assert.deepEqual(r.unavailable, [{ name: 'wal', reason: 'open ./gone/wal.img: ENOENT' }]);
  // Not in the peer's Hello at all (its config lacks it, say one site reloaded first): that volume waits, the others link.
  const missing = checkHello(hello(), 'site-b', [vol(), wal]);
  assert.ok(missing.ok, refused(missing));
  assert.deepEqual(missing.pairs.map((p) => p.local.name), ['db']);
  assert.equal(missing.unavailable.length, 1);
  assert.equal(missing.unavailable[0]!.name, 'wal');
  assert.equal(missing.unavailable[0]!.missing, true);
  assert.match(missing.unavailable[0]!.reason, /^not in site-b's config as a volume paired with this node \(add it there, then `offsite reload` on site-b\)$/);
  // Nothing shared at all: still a link (it carries nothing until a config names a volume on both sides).
  const none = checkHello(hello({ volumes: [] }), 'site-b', [vol()]);
  assert.ok(none.ok);
  assert.deepEqual(none.pairs, []);
  // Listed but described too (a Hello from a node that opened it meanwhile): the description wins.
  const both = checkHello(hello({ volumes: [vol({ role: 'secondary' }), vol({ name: 'wal', uuid: 'u9', role: 'secondary' })],
    unavailable: [{ name: 'wal', reason: 'stale' }] }), 'site-b', [vol(), wal]);
  assert.ok(both.ok);
  assert.deepEqual(both.pairs.map((p) => p.local.name), ['db', 'wal']);
  assert.deepEqual(both.unavailable, []);
});

test('the Hello frame lists volumes not opened only when there are some; the bytes without any are the previous release\'s', () => {
  const plain = encodeHelloFrame({ node: 'site-a', codecs: ['zstd'], volumes: [vol()] });
  const none = encodeHelloFrame({ node: 'site-a', codecs: ['zstd'], volumes: [vol()], unavailable: [] });
  assert.deepEqual(Buffer.concat(none), Buffer.concat(plain));
  assert.doesNotMatch(Buffer.concat(plain).toString('latin1'), /unavailable/);
  const some = Buffer.concat(encodeHelloFrame({ node: 'site-a', codecs: ['zstd'], volumes: [vol()], unavailable: [{ name: 'wal', reason: 'ENOENT' }] }));
  assert.match(some.toString('latin1'), /\}\],"unavailable":\[\{"name":"wal","reason":"ENOENT"\}\]\}$/);
});

test('a VolumeHello frame from fixed bytes: version 3, type 13, its JSON; anything else is a bad frame', () => {
  const parts = encodeVolumeHello({ volume: 'db', reply: false, unavailable: 'volume db is being promoted here' });
  const json = '{"volume":"db","reply":false,"unavailable":"volume db is being promoted here"}';
  assert.equal(parts[0]!.subarray(0, 8).toString('hex'), '4f46504c030d0000', 'magic, version 3, type 13, flags 0');
  assert.equal(parts[0]!.readUInt32LE(8), json.length);
  assert.equal(parts[1]!.toString(), json);
  assert.deepEqual(decodeVolumeHello(Buffer.from(json)), { volume: 'db', reply: false, unavailable: 'volume db is being promoted here' });
  const described = vol({ role: 'secondary' });
  const answer = `{"volume":"db","reply":true,"described":${JSON.stringify(described)}}`;
  assert.equal(encodeVolumeHello({ volume: 'db', reply: true, described })[1]!.toString(), answer);
  assert.deepEqual(decodeVolumeHello(Buffer.from(answer)), { volume: 'db', reply: true, described });
  assert.deepEqual(decodeVolumeHello(Buffer.from('{"volume":"db","reply":true}')), { volume: 'db', reply: true }, 'neither: not shared there');
  assert.throws(() => decodeVolumeHello(Buffer.from('nope')), /a VolumeHello that is not JSON/);
  assert.throws(() => decodeVolumeHello(Buffer.from('{"volume":"db"}')), /a VolumeHello malformed at reply/);
  assert.throws(() => decodeVolumeHello(Buffer.from('{"volume":"db","reply":true,"more":1}')), /malformed/);
  assert.throws(() => decodeVolumeHello(Buffer.from(`{"volume":"wal","reply":true,"described":${JSON.stringify(described)}}`)),
    /a VolumeHello for wal that describes db/);
  assert.throws(() => decodeVolumeHello(Buffer.from(`{"volume":"db","reply":true,"unavailable":"x","described":${JSON.stringify(described)}}`)),
    /both described and unavailable/);
});
