// The node's limits, named in one place (docs/INVARIANTS.md says which relations
// between them the code asserts). A figure here bounds memory, latency or disk use;
// the comment says what it bounds and why it is the size it is.

const MiB = 1 << 20;

/**
 * The secondary applies at most about this much of the receive log as one unit
 * (more only when a coalesced unit must go whole). Readers of the replica and an
 * operator's checkpoint or drill wait for at most one unit, so this bounds how long
 * they wait: 64 MiB is a fraction of a second at disk speed. A unit still ends at a
 * durable barrier, so the replica moves from one flush point to another.
 */
export const APPLY_UNIT_BYTES = 64 * MiB;

/** One read of journal or receive-log records into memory (a batch to ship or to apply). */
export const READ_BATCH_BYTES = 8 * MiB;
