// A seed fails when the code under test breaks one of its own assertions
// (src/invariants/assert.ts), even if the error was caught on the way up (the I/O
// paths catch errors to retry them; the daemon's handler exits before they can).
import { onViolation, type InvariantError } from '../../src/invariants/assert.js';

export async function watchInvariants<T>(seed: number, run: () => Promise<T>, failure: (msg: string) => Error): Promise<T> {
  let broken: InvariantError | null = null;
  const prev = onViolation((e) => { broken ??= e; });
  try {
    const out = await run();
    if (broken) throw failure(`seed ${seed}: ${(broken as InvariantError).message}`);
    return out;
  } catch (e) {
    if (broken) {
      const b = broken as InvariantError;
      throw failure(`seed ${seed}: ${b.message}${e !== b ? ` (then: ${(e as Error).message})` : ''}`);
    }
    throw e;
  } finally {
    onViolation(prev);
  }
}
