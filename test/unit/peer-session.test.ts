// The link's state machine (src/link/peer-session.ts), the one the daemon and the
// simulation both drive: Hello gating, routing by pairing, heartbeats and round trip,
// dead peers, refusals, and the order of frames behind a PackedRecords frame.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FrameDecoder, PROTOCOL_RANGE, encodeAck, encodeFrame, encodeHeartbeat, FrameType, type Frame } from '../../src/link/frame.js';
import { PeerSession, type SessionAction } from '../../src/link/peer-session.js';
import type { HelloVolume } from '../../src/link/hello.js';

const vol = (role: 'primary' | 'secondary', name = 'db'): HelloVolume =>
  ({ name, uuid: 'u', size: 1 << 20, role, generation: ['g'], durableSeq: 0, logBytes: 64 << 20, round: 0 });

function pair(): { a: PeerSession; b: PeerSession } {
  const paired = (peer: string) => (v: string): string[] => (v === 'db' ? [peer] : v === 'other' ? ['site-c'] : []);
  const a = new PeerSession({ node: 'site-a', peer: 'site-b', initiator: true, speaks: PROTOCOL_RANGE, deadAfterMs: 5000, shared: () => [vol('primary')],
    pairedWith: paired('site-b') });
  const b = new PeerSession({ node: 'site-b', peer: 'site-a', initiator: false, speaks: PROTOCOL_RANGE, deadAfterMs: 5000, shared: () => [vol('secondary')],
    pairedWith: paired('site-a') });
  return { a, b };
}

/** The frames of the 'send' actions, decoded. */
function frames(actions: SessionAction[]): Frame[] {
  const d = new FrameDecoder();
  for (const a of actions) if (a.type === 'send') d.push(Buffer.concat(a.parts));
  const out: Frame[] = [];
  for (let f = d.next(); f; f = d.next()) out.push(f);
  return out;
}

const one = (parts: Buffer[]): Frame => frames([{ type: 'send', parts }])[0]!;
const types = (actions: SessionAction[]): string[] => actions.map((a) => a.type);

test('the acceptor speaks first; each side is up after the other\'s Hello, the dialer answering with its own', () => {
  const { a, b } = pair();
  assert.deepEqual(a.handle({ type: 'open', now: 0 }), [], 'the dialer waits');
  const helloB = frames(b.handle({ type: 'open', now: 0 }));
  assert.equal(helloB[0]!.type, FrameType.Hello);
  const atA = a.handle({ type: 'frame', frame: helloB[0]!, now: 1 });
  assert.deepEqual(types(atA), ['send', 'up']);
  assert.equal(a.up, true);
  const atB = b.handle({ type: 'frame', frame: frames(atA)[0]!, now: 2 });
  assert.deepEqual(types(atB), ['up']);
  const up = atB[0] as Extract<SessionAction, { type: 'up' }>;
  assert.equal(up.check.pairs[0]!.remote.role, 'primary');
});

test('a frame before Hello, or a second Hello, closes the link', () => {
  const { a, b } = pair();
  b.handle({ type: 'open', now: 0 });
  assert.match((b.handle({ type: 'frame', frame: one(encodeAck('db', 1)), now: 1 })[0] as { reason: string }).reason,
    /site-a sent frame type \d+ before Hello/);
  const p = pair();
  const hello = frames(p.b.handle({ type: 'open', now: 0 }))[0]!;
  p.a.handle({ type: 'frame', frame: hello, now: 1 });
  assert.match((p.a.handle({ type: 'frame', frame: hello, now: 2 })[0] as { reason: string }).reason, /sent a second Hello/);
  void a;
});

test('frames are routed only for volumes paired with this peer', () => {
  const { a, b } = pair();
  const helloB = frames(b.handle({ type: 'open', now: 0 }))[0]!;
  a.handle({ type: 'frame', frame: helloB, now: 0 });
  assert.deepEqual(a.handle({ type: 'frame', frame: one(encodeAck('db', 7)), now: 1 }), [{ type: 'ack', volume: 'db', seq: 7 }]);
  const wrong = a.handle({ type: 'frame', frame: one(encodeAck('other', 7)), now: 2 });
  assert.equal(wrong[0]!.type, 'close');
  assert.match((wrong[0] as { reason: string }).reason, /site-b sent a Ack frame for volume other, which is paired with site-c, not site-b/);
  assert.deepEqual(a.handle({ type: 'frame', frame: one(encodeAck('db', 8)), now: 3 }), [], 'closed: nothing more is taken');
});

test('a set of three: a volume secondary on both sides is carried by no link; a frame for it closes the link', () => {
  // site-b and site-c both follow site-a for db (each names the other in its set); wal is paired here, site-b primary.
  const set = (v: string): string[] => (v === 'db' ? ['site-a', 'site-c'] : ['site-c']);
  const c = new PeerSession({ node: 'site-b', peer: 'site-c', initiator: true, speaks: PROTOCOL_RANGE, deadAfterMs: 5000,
    shared: () => [vol('secondary'), vol('primary', 'wal')], pairedWith: set });
  const other = new PeerSession({ node: 'site-c', peer: 'site-b', initiator: false, speaks: PROTOCOL_RANGE, deadAfterMs: 5000,
    shared: () => [vol('secondary'), vol('secondary', 'wal')], pairedWith: (v) => (v === 'db' ? ['site-a', 'site-b'] : ['site-b']) });
  const atC = c.handle({ type: 'frame', frame: frames(other.handle({ type: 'open', now: 0 }))[0]!, now: 1 });
  const up = atC.find((x) => x.type === 'up') as Extract<SessionAction, { type: 'up' }>;
  assert.deepEqual(up.check.pairs.map((x) => x.local.name), ['wal'], 'db pairs nothing: both follow site-a');
  assert.deepEqual(c.handle({ type: 'frame', frame: one(encodeAck('wal', 3)), now: 2 }), [{ type: 'ack', volume: 'wal', seq: 3 }]);
  const wrong = c.handle({ type: 'frame', frame: one(encodeAck('db', 3)), now: 3 });
  assert.equal(wrong[0]!.type, 'close');
  assert.match((wrong[0] as { reason: string }).reason, /site-c sent a Ack frame for volume db, which this link does not carry/);
});

test('a Hello that does not match is refused: a Refuse at the Hello\'s version, the reason once, then a close after a linger', () => {
  // This node's config knows the peer behind that certificate as site-c; it calls itself site-b.
  const a = new PeerSession({ node: 'site-a', peer: 'site-c', initiator: true, speaks: PROTOCOL_RANGE, deadAfterMs: 5000, shared: () => [vol('primary')],
    pairedWith: () => ['site-c'] });
  const { b } = pair();
  const out = a.handle({ type: 'frame', frame: frames(b.handle({ type: 'open', now: 0 }))[0]!, now: 1 });
  assert.deepEqual(types(out), ['send', 'refused', 'close']);
  assert.equal(frames(out)[0]!.type, FrameType.Refuse);
  assert.equal((out[1] as { code: string }).code, 'wrong-node');
  assert.equal((out[2] as { afterMs?: number }).afterMs, 100);
  assert.match(a.refused ?? '', /the peer calls itself "site-b"/);
  assert.deepEqual(a.handle({ type: 'closed' }), [], 'a refused link that drops is no fingerprint problem');
});

test('a volume whose roles conflict is not refused with the link: the link comes up without it, and a frame for it closes the link', () => {
  // db is secondary on both sides (one peer each): a conflict of db's, not of the link.
  const a = new PeerSession({ node: 'site-a', peer: 'site-b', initiator: true, speaks: PROTOCOL_RANGE, deadAfterMs: 5000, shared: () => [vol('secondary')],
    pairedWith: () => ['site-b'] });
  const { b } = pair();
  const out = a.handle({ type: 'frame', frame: frames(b.handle({ type: 'open', now: 0 }))[0]!, now: 1 });
  assert.deepEqual(types(out), ['send', 'up']);
  assert.equal(frames(out)[0]!.type, FrameType.Hello);
  const up = out[1] as Extract<SessionAction, { type: 'up' }>;
  assert.deepEqual([up.check.pairs.length, up.check.conflicts.map((c) => [c.volume, c.code])], [0, [['db', 'two-secondaries']]]);
  assert.equal(a.refused, null);
  const wrong = a.handle({ type: 'frame', frame: one(encodeAck('db', 3)), now: 2 });
  assert.match((wrong[0] as { reason: string }).reason, /site-b sent a Ack frame for volume db, which this link does not carry/);
});

test('heartbeats after Hello carry the echo; the round trip is the least sample; silence past the timeout closes', () => {
  const { a, b } = pair();
  const helloB = frames(b.handle({ type: 'open', now: 0 }))[0]!;
  a.handle({ type: 'frame', frame: helloB, now: 0 });
  assert.equal(frames(a.handle({ type: 'tick', now: 1000 }))[0]!.type, FrameType.Heartbeat);
  // The peer's beat sent at its clock 5000, echoing ours of 1000 held 40 ms; arrives at 1100.
  a.handle({ type: 'frame', frame: one(encodeHeartbeat({ clock: 5000, echo: { clock: 1000, heldMs: 40 } })), now: 1100 });
  assert.equal(a.rttMs, 60);
  a.handle({ type: 'frame', frame: one(encodeHeartbeat({ clock: 6000, echo: { clock: 2000, heldMs: 10 } })), now: 2200 });
  assert.equal(a.rttMs, 60, 'the least of the samples (the second waited behind records)');
  assert.deepEqual(a.handle({ type: 'tick', now: 7000 }).map((x) => x.type), ['send'], 'within the timeout');
  const dead = a.handle({ type: 'tick', now: 7201 });
  assert.match((dead[0] as { reason: string }).reason, /no word from site-b for 5 s: peer dead or link cut/);
});

test('frames behind a PackedRecords frame wait for its unpacking (heartbeats do not), in order', () => {
  const { a, b } = pair();
  const helloA = (() => { const h = frames(b.handle({ type: 'open', now: 0 }))[0]!; return frames(a.handle({ type: 'frame', frame: h, now: 0 }))[0]!; })();
  b.handle({ type: 'frame', frame: helloA, now: 0 });
  // (Only the volume name at the payload's head is read here: the adapter parses the rest.)
  const first = b.handle({ type: 'frame', frame: one(encodeFrame(FrameType.PackedRecords, encodeName('db'))), now: 1 });
  assert.equal(first[0]!.type, 'unpack');
  assert.deepEqual(b.handle({ type: 'frame', frame: one(encodeFrame(FrameType.Resync, resyncPayload('db', 9))), now: 2 }), [], 'waits');
  assert.deepEqual(b.handle({ type: 'frame', frame: one(encodeHeartbeat({ clock: 1 })), now: 3 }), [], 'a heartbeat is taken at once');
  assert.deepEqual(b.handle({ type: 'unpacked' }), [{ type: 'resync', volume: 'db', startSeq: 9 }]);
});

function encodeName(name: string): Buffer {
  const n = Buffer.from(name);
  const b = Buffer.alloc(2 + n.length + 8);
  b.writeUInt16LE(n.length, 0);
  n.copy(b, 2);
  return b;
}

function resyncPayload(name: string, seq: number): Buffer {
  const n = Buffer.from(name);
  const b = Buffer.alloc(2 + n.length + 8);
  b.writeUInt16LE(n.length, 0);
  n.copy(b, 2);
  b.writeBigUInt64LE(BigInt(seq), 2 + n.length);
  return b;
}

// --- A volume's Hello again (protocol 3): one volume paired again, the link and its other volumes untouched ---

/** Both sides up (b, the acceptor, speaks first); `roles` are each side's descriptions, changed by the test as the node's would be. */
function upPair(speaks = PROTOCOL_RANGE, dbConfigured = (): boolean => true): { a: PeerSession; b: PeerSession; atA: HelloVolume[]; atB: HelloVolume[] } {
  const atA = [vol('primary'), vol('primary', 'logs')];
  const atB = [vol('secondary'), vol('secondary', 'logs')];
  const paired = (peer: string) => (v: string): string[] => ((v === 'db' && dbConfigured()) || v === 'logs' ? [peer] : []);
  const a = new PeerSession({ node: 'site-a', peer: 'site-b', initiator: true, speaks, deadAfterMs: 5000, shared: () => atA, pairedWith: paired('site-b') });
  const b = new PeerSession({ node: 'site-b', peer: 'site-a', initiator: false, speaks, deadAfterMs: 5000, shared: () => atB, pairedWith: paired('site-a') });
  const helloB = b.handle({ type: 'open', now: 0 });
  const fromA = a.handle({ type: 'frame', frame: frames(helloB)[0]!, now: 0 });
  b.handle({ type: 'frame', frame: frames(fromA)[0]!, now: 0 });
  assert.ok(a.up && b.up);
  return { a, b, atA, atB };
}

/** Hands each frame the actions send to `to`; its actions. */
function deliver(actions: SessionAction[], to: PeerSession, now = 1): SessionAction[] {
  return frames(actions).flatMap((f) => to.handle({ type: 'frame', frame: f, now }));
}

const ups = (actions: SessionAction[]): Array<Extract<SessionAction, { type: 'volumeUp' }>> =>
  actions.filter((a): a is Extract<SessionAction, { type: 'volumeUp' }> => a.type === 'volumeUp');

test('a volume\'s Hello again: asked, answered, both sides pair it again from the new descriptions; the other volume and the link untouched', () => {
  const { a, b, atB } = upPair();
  assert.equal(a.version, PROTOCOL_RANGE.max);
  assert.equal(a.rehelloes, true);
  const before = a.pairingOf('db');
  const asked = a.rehello('db');
  assert.deepEqual(types(asked), ['volumeDown', 'send']);
  assert.equal(a.carries('db'), false);
  assert.equal(a.carries('logs'), true);
  const req = frames(asked)[0]!;
  assert.equal(req.type, FrameType.VolumeHello);
  // Meanwhile b's description moved on (its receive log durable further): the answer carries it.
  atB[0] = { ...atB[0]!, durableSeq: 42 };
  const atBActions = b.handle({ type: 'frame', frame: req, now: 1 });
  assert.deepEqual(types(atBActions), ['volumeDown', 'send', 'volumeUp']);
  const upB = ups(atBActions)[0]!;
  assert.ok(upB.outcome && 'pair' in upB.outcome && upB.outcome.pair.remote.role === 'primary');
  const atAActions = deliver(atBActions, a);
  assert.deepEqual(types(atAActions), ['volumeUp']);
  const upA = ups(atAActions)[0]!;
  assert.ok(upA.outcome && 'pair' in upA.outcome && upA.outcome.pair.remote.durableSeq === 42, 'paired from the answer');
  assert.ok(a.carries('db') && b.carries('db') && a.up && b.up);
  assert.ok(a.pairingOf('db') > before + 1, 'a pairing ended and another began');
  // The other volume's frames flowed all along.
  assert.deepEqual(a.handle({ type: 'frame', frame: one(encodeAck('logs', 3)), now: 2 }), [{ type: 'ack', volume: 'logs', seq: 3 }]);
});

test('while a side waits for the answer, the volume\'s frames of the pairing that ended are dropped, not taken or closed on', () => {
  // (Even once the config no longer pairs the volume with that peer: a reload that took it away asks too.)
  let configured = true;
  const gone = upPair(PROTOCOL_RANGE, () => configured);
  gone.a.rehello('db');
  configured = false;
  const late = one(encodeAck('db', 3));
  assert.deepEqual(gone.a.handle({ type: 'frame', frame: late, now: 1 }), [{ type: 'dropped', frame: late }]);
  const { a, b } = upPair();
  const asked = a.rehello('db');
  // An ack b sent before it read the request: dropped (the adapter gives back what the frame holds).
  const stale = one(encodeAck('db', 9));
  assert.deepEqual(a.handle({ type: 'frame', frame: stale, now: 1 }), [{ type: 'dropped', frame: stale }]);
  assert.equal(a.closed, false);
  deliver(deliver(asked, b), a);
  assert.deepEqual(a.handle({ type: 'frame', frame: one(encodeAck('db', 10)), now: 2 }), [{ type: 'ack', volume: 'db', seq: 10 }], 'taken again once paired');
});

test('both sides ask at once: the request of the node whose name sorts first stands, the other answers it; one pairing each, no echo', () => {
  const { a, b } = upPair();
  const fromA = a.rehello('db');
  const fromB = b.rehello('db');
  const atB = deliver(fromA, b); // b (site-b sorts after site-a) answers a's request, its own void
  assert.deepEqual(types(atB), ['volumeDown', 'send', 'volumeUp']);
  const atA = deliver(fromB, a); // a ignores b's request: its own stands
  assert.deepEqual(atA, []);
  const answered = deliver(atB, a);
  assert.deepEqual(types(answered), ['volumeUp']);
  assert.ok(a.carries('db') && b.carries('db'));
  assert.deepEqual(frames(answered), [], 'nothing more sent');
});

test('changed again while asking: asked again once the answer comes; the peer pairs the newest', () => {
  const { a, b, atA } = upPair();
  const first = a.rehello('db');
  atA[0] = { ...atA[0]!, generation: ['g2', 'g'] };
  assert.deepEqual(types(a.rehello('db')), ['volumeDown'], 'asked already: nothing sent yet');
  const answer = deliver(first, b);
  const again = deliver(answer, a);
  assert.deepEqual(types(again), ['send'], 'not paired on the stale answer: asked again');
  const answer2 = deliver(again, b);
  const up = ups(answer2)[0]!;
  assert.ok(up.outcome && 'pair' in up.outcome && up.outcome.pair.remote.generation[0] === 'g2');
  assert.deepEqual(types(deliver(answer2, a)), ['volumeUp']);
  assert.ok(a.carries('db') && b.carries('db'));
});

test('a volume\'s Hello again pairs as a Hello would: a conflict found on both sides; one removed, missing there', () => {
  const { a, b, atA } = upPair();
  // b promoted db (a forced promote while a serves it): two primaries, each side's verdict from its own side.
  const c = upPair();
  c.atB[0] = { ...c.atB[0]!, role: 'primary', generation: ['g2', 'g'] };
  const answer = deliver(c.b.rehello('db'), c.a);
  const upA = ups(answer)[0]!;
  assert.ok(upA.outcome && 'code' in upA.outcome && upA.outcome.code === 'peer-promoted', JSON.stringify(upA.outcome));
  const upB = ups(deliver(answer, c.b))[0]!;
  assert.ok(upB.outcome && 'code' in upB.outcome && upB.outcome.code === 'two-primaries', JSON.stringify(upB.outcome));
  assert.ok(!c.a.carries('db') && !c.b.carries('db'));
  // A frame for it now closes the link, as after a Hello that did not pair it.
  assert.equal(c.a.handle({ type: 'frame', frame: one(encodeAck('db', 1)), now: 3 })[0]!.type, 'close');
  // Removed at a: its VolumeHello describes nothing, and b says it is missing there.
  atA.splice(0, 1);
  const gone = deliver(a.rehello('db'), b);
  const missing = ups(gone)[0]!;
  assert.ok(missing.outcome && 'missing' in missing.outcome && missing.outcome.missing, JSON.stringify(missing.outcome));
  assert.equal(ups(deliver(gone, a))[0]!.outcome, null, 'not a volume a shares with b: nothing to wire');
});

test('an answer nobody asked for closes the link; a link of protocol 2 has no Hello again', () => {
  const { a, b } = upPair();
  const asked = a.rehello('db');
  const answer = deliver(asked, b);
  const p = upPair();
  const closed = deliver(answer, p.a);
  assert.equal(closed[0]!.type, 'close');
  assert.match((closed[0] as { reason: string }).reason, /site-b answered a VolumeHello for db that this node did not send/);
  const old = upPair({ min: 1, max: 2 });
  assert.equal(old.a.version, 2);
  assert.equal(old.a.rehelloes, false);
  assert.throws(() => old.a.rehello('db'), /a Hello again on a link to site-b at protocol 2/);
});
