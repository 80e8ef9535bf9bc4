// The `snmp:` section of offsite.yaml (docs/CONFIG.md, docs/SNMP.md), checked with
// zod like the rest of the file: every error names the key ("snmp.users.0.authKey: ...").
import { z } from 'zod';
import { parseListenAddress } from '../nbd/server.js';

/** A UDP host:port ("127.0.0.1:161", "[::1]:1161"). */
const udpAddress = z.string().transform((v, ctx) => {
  try {
    const a = parseListenAddress(v);
    if (a.kind === 'tcp') return a;
    ctx.addIssue({ code: 'custom', message: `"${v}" must be host:port (UDP)` });
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message.replace(' or unix:/path', '') });
  }
  return z.NEVER;
});

const snmpUserSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9._-]{1,32}$/, 'a user name is 1 to 32 letters, digits, ".", "_" or "-"'),
  authProtocol: z.enum(['md5', 'sha', 'sha224', 'sha256', 'sha384', 'sha512'], { error: 'must be one of sha, sha224, sha256, sha384, sha512, md5' }),
  authKey: z.string().min(8, 'must be at least 8 characters (SNMPv3 refuses shorter passphrases)'),
  privProtocol: z.enum(['aes', 'aes256b', 'aes256r'], { error: 'must be aes, aes256b or aes256r (DES is not offered: Node.js\'s OpenSSL 3 lacks it)' }),
  privKey: z.string().min(8, 'must be at least 8 characters (SNMPv3 refuses shorter passphrases)'),
  /** read-write may write offsiteVolumeCheckpointControl; read-only may only read. */
  access: z.enum(['read-write', 'read-only']).default('read-write'),
});

export const snmpSchema = z.strictObject({
  listen: udpAddress,
  /** The SNMPv2c community: read-only. Absent: no v1/v2c access. */
  community: z.string().min(1).max(64).optional(),
  users: z.array(snmpUserSchema).max(32).default([]),
  /** Notification targets: v2c with `community` (default "public"), or SNMPv3 as one of `users`. */
  traps: z.array(z.strictObject({
    address: udpAddress,
    community: z.string().min(1).max(64).optional(),
    user: z.string().optional(),
    inform: z.boolean().default(false),
  })).max(16).default([]),
  /** offsiteLagHigh when a volume's lag rises above this many seconds. */
  lagAlarmSeconds: z.number({ error: 'must be a number of seconds' }).positive('must be above 0').max(365 * 86400, 'must be at most a year (31536000)').optional(),
}).superRefine((s, ctx) => {
  if (s.community === undefined && s.users.length === 0) ctx.addIssue({ code: 'custom', path: ['community'], message: 'give a read-only community, SNMPv3 users, or both' });
  s.users.forEach((u, i) => {
    if (s.users.findIndex((x) => x.name === u.name) !== i) ctx.addIssue({ code: 'custom', path: ['users', i, 'name'], message: `user "${u.name}" is listed twice` });
  });
  s.traps.forEach((t, i) => {
    if (t.user !== undefined && t.community !== undefined) ctx.addIssue({ code: 'custom', path: ['traps', i, 'user'], message: 'give community (SNMPv2c) or user (SNMPv3), not both' });
    else if (t.user !== undefined && !s.users.some((u) => u.name === t.user)) ctx.addIssue({ code: 'custom', path: ['traps', i, 'user'], message: `no user named "${t.user}" under snmp.users` });
  });
});

export type SnmpConfig = z.infer<typeof snmpSchema>;
