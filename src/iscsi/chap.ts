// CHAP for iSCSI (RFC 7143 12.1.3, RFC 1994): MD5 only (CHAP_A=5). The target sends
// an identifier and a random challenge; the initiator answers with its name and
// MD5(identifier || secret || challenge). Mutual CHAP: the initiator sends its own
// identifier and challenge with its answer, and the target answers them with the
// mutual secret. A challenge equal to ours (a reflection attack) is refused.
import { createHash, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';

/** The only algorithm offered: MD5 (RFC 1994). */
export const CHAP_MD5 = 5;
/** Bytes of the challenge we send (RFC 7143 12.1.3 asks at least as long as the MD5 output's 16). */
export const CHAP_CHALLENGE_BYTES = 32;
/** The longest challenge we answer (mutual CHAP): CHAP_C is at most 1024 bytes once decoded. */
export const CHAP_MAX_CHALLENGE_BYTES = 1024;

/** MD5(id || secret || challenge), RFC 1994 section 4.1. */
export function chapResponse(id: number, secret: string, challenge: Buffer): Buffer {
  return createHash('md5').update(Buffer.from([id & 0xff])).update(Buffer.from(secret, 'utf8')).update(challenge).digest();
}

/** A binary value as iSCSI writes it: 0x + hex (the form every initiator reads). */
export function encodeBinary(b: Buffer): string {
  return `0x${b.toString('hex')}`;
}

/** A binary value in hex (0x/0X) or base64 (0b/0B) (RFC 7143 6.1, "binary-value"); null when malformed. */
export function decodeBinary(s: string): Buffer | null {
  const prefix = s.slice(0, 2).toLowerCase();
  const body = s.slice(2);
  if (body.length === 0) return null;
  if (prefix === '0x') {
    if (!/^[0-9a-fA-F]+$/.test(body)) return null;
    return Buffer.from(body.length % 2 === 1 ? `0${body}` : body, 'hex');
  }
  if (prefix === '0b') {
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body) || body.length % 4 !== 0) return null;
    return Buffer.from(body, 'base64');
  }
  return null;
}

export interface ChapChallenge {
  id: number;
  challenge: Buffer;
}

export function newChallenge(): ChapChallenge {
  return { id: randomInt(0, 256), challenge: randomBytes(CHAP_CHALLENGE_BYTES) };
}

/** Whether `response` (as sent in CHAP_R) proves knowledge of `secret` for our challenge; constant time. */
export function verifyResponse(ours: ChapChallenge, secret: string, response: Buffer): boolean {
  const want = chapResponse(ours.id, secret, ours.challenge);
  if (response.length !== want.length) return false;
  return timingSafeEqual(response, want);
}

/** Constant-time equality of two names (an unknown user and a wrong secret take the same time). */
export function sameName(a: string, b: string): boolean {
  const x = createHash('sha256').update(a).digest();
  const y = createHash('sha256').update(b).digest();
  return timingSafeEqual(x, y);
}
