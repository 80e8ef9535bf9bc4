// The `snmp:` section of offsite.yaml (docs/CONFIG.md, docs/SNMP.md), checked with
// zod like the rest of the file: every error names the key ("snmp.users.0.auth_key: ...").
// Keys are snake_case like the rest of offsite.yaml; the parsed form is camelCase.
import { z } from 'zod';
import { parseListenAddress } from '../export/listen-address.js';
import { parseDuration } from '../units/units.js';

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
  auth_protocol: z.enum(['md5', 'sha', 'sha224', 'sha256', 'sha384', 'sha512'], { error: 'must be one of sha, sha224, sha256, sha384, sha512, md5' }),
  auth_key: z.string().min(8, 'must be at least 8 characters (SNMPv3 refuses shorter passphrases)'),
  priv_protocol: z.enum(['aes', 'aes256b', 'aes256r'], { error: 'must be aes, aes256b or aes256r (DES is not offered: Node.js\'s OpenSSL 3 lacks it)' }),
  priv_key: z.string().min(8, 'must be at least 8 characters (SNMPv3 refuses shorter passphrases)'),
  /** read-write may write offsiteVolumeCheckpointControl; read-only may only read. */
  access: z.enum(['read-write', 'read-only']).default('read-write'),
}).transform((u) => ({ name: u.name, authProtocol: u.auth_protocol, authKey: u.auth_key, privProtocol: u.priv_protocol,
  privKey: u.priv_key, access: u.access }));

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
  /** offsiteLagHigh when a volume's lag rises above this ("5m", or seconds). */
  lag_alarm: z.union([z.string(), z.number()]).transform((v, ctx) => {
    try {
      const s = parseDuration(v);
      if (s > 0 && s <= 365 * 86400) return s;
      ctx.addIssue({ code: 'custom', message: 'must be above 0 and at most a year' });
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message });
    }
    return z.NEVER;
  }).optional(),
}).superRefine((s, ctx) => {
  if (s.community === undefined && s.users.length === 0) ctx.addIssue({ code: 'custom', path: ['community'],
    message: 'give a read-only community, SNMPv3 users, or both' });
  s.users.forEach((u, i) => {
    if (s.users.findIndex((x) => x.name === u.name) !== i) ctx.addIssue({ code: 'custom', path: ['users', i, 'name'],
      message: `user "${u.name}" is listed twice` });
  });
  s.traps.forEach((t, i) => {
    if (t.user !== undefined && t.community !== undefined) ctx.addIssue({ code: 'custom', path: ['traps', i, 'user'],
      message: 'give community (SNMPv2c) or user (SNMPv3), not both' });
    else if (t.user !== undefined && !s.users.some((u) => u.name === t.user)) ctx.addIssue(
      { code: 'custom', path: ['traps', i, 'user'], message: `no user named "${t.user}" under snmp.users` });
  });
}).transform(({ lag_alarm, ...rest }) => ({ ...rest, lagAlarmSeconds: lag_alarm }));

export type SnmpConfig = z.infer<typeof snmpSchema>;
