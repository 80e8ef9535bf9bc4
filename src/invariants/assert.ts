// Assertions of the invariants (docs/INVARIANTS.md), on in production. A broken one
// means the code is wrong, not the input: the daemon stops before it can write
// something wrong, and recovery takes over at the next start (every on-disk state is
// one recovery already handles, since a crash can stop the daemon anywhere).
//
// `assert` throws an InvariantError and, first, calls the violation handler: the
// daemon installs one that logs and exits at once, so no catch on the way up (many
// I/O paths catch errors to retry them) can swallow the violation. The simulation
// installs one that fails the seed.

export class InvariantError extends Error {
  constructor(message: string) {
    super(`invariant broken: ${message}`);
    this.name = 'InvariantError';
  }
}

type ViolationHandler = (e: InvariantError) => void;
let handler: ViolationHandler | null = null;

/** Installs what happens on a broken invariant (before the throw); returns the previous handler. */
export function onViolation(h: ViolationHandler | null): ViolationHandler | null {
  const prev = handler;
  handler = h;
  return prev;
}

export function assert(condition: unknown, message: string | (() => string)): asserts condition {
  if (condition) return;
  const e = new InvariantError(typeof message === 'function' ? message() : message);
  handler?.(e);
  throw e;
}
