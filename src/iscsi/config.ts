// The `iscsi:` section of offsite.yaml and the per-volume `iscsi:` override (docs/CONFIG.md,
// docs/ISCSI.md), checked with zod like the rest of the file. Also the target names:
// each export is its own target, named from the node's base IQN (docs/ISCSI.md, "Names").
import { z } from 'zod';
import { parseListenAddress, type ListenAddress } from '../export/listen-address.js';
import type { ChapSecret, IscsiAuth } from './targets.js';

/** An iSCSI name is at most 223 bytes (RFC 7143 section 4.2.7.1). */
export const ISCSI_NAME_MAX_BYTES = 223;
/** What a target name adds to the base: ":" + a volume name (63) + ":checkpoint". */
const TARGET_SUFFIX_MAX = 1 + 63 + ':checkpoint'.length;
/** iqn.YYYY-MM.reversed.domain[:anything], lower case (RFC 7143 section 4.2.7.2, RFC 3722's characters). */
const IQN = /^iqn\.\d{4}-(0[1-9]|1[0-2])\.[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[a-z0-9.:-]+)?$/;
/** An initiator name: iqn., eui. (16 hex digits) or naa. (16 or 32 hex digits). */
const INITIATOR = new RegExp(
  String.raw`^(iqn\.\d{4}-(0[1-9]|1[0-2])\.[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[a-z0-9.:-]+)?` +
  String.raw`|eui\.[0-9a-f]{16}|naa\.([0-9a-f]{16}|[0-9a-f]{32}))$`,
);

/**
 * CHAP secrets: Microsoft's initiator takes 12 to 16 characters, RFC 7143 section 12.1.3
 * asks for at least 96 bits; longer ones work with Linux, ESXi and FreeBSD.
 */
const secret = z.string().min(12, 'must be at least 12 characters (Windows refuses shorter CHAP secrets; RFC 7143 asks for 96 bits)').max(255);
const chapUser = z.string().min(1).max(255).regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces');

const chapSchema = z.strictObject({
  user: chapUser,
  secret,
  /** Mutual CHAP: the target proves itself to the initiator with this name and secret. */
  mutual_user: chapUser.optional(),
  mutual_secret: secret.optional(),
}).superRefine((c, ctx) => {
  if ((c.mutual_user === undefined) !== (c.mutual_secret === undefined)) {
    ctx.addIssue({
      code: 'custom',
      path: [c.mutual_user === undefined ? 'mutual_user' : 'mutual_secret'],
      message: 'mutual CHAP needs both mutual_user and mutual_secret',
    });
  }
  if (c.mutual_secret !== undefined && c.mutual_secret === c.secret) {
    ctx.addIssue({
      code: 'custom',
      path: ['mutual_secret'],
      message: 'must differ from secret (an initiator could answer its own challenge: RFC 7143 section 12.1.3)',
    });
  }
});

const initiators = z.array(z.string().transform((v) => v.toLowerCase())
  .refine((v) => INITIATOR.test(v), 'an initiator name is iqn.YYYY-MM.domain[:name], eui.<16 hex> or naa.<hex>')).max(1024);

export const iscsiSchema = z.strictObject({
  /** host:port; TCP only. The section absent: no iSCSI. */
  listen: z.string().transform((v, ctx) => {
    try {
      const a = parseListenAddress(v);
      if (a.kind === 'tcp') return a;
      ctx.addIssue({ code: 'custom', message: `"${v}" must be host:port (iSCSI runs over TCP)` });
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message.replace(' or unix:/path', '') });
    }
    return z.NEVER;
  }),
  /** The base name; each export is the target BASE:VOLUME (docs/ISCSI.md, "Names"). */
  iqn: z.string().transform((v) => v.toLowerCase())
    .refine((v) => IQN.test(v), 'an iSCSI qualified name: iqn.YYYY-MM.reversed.domain[:name], e.g. iqn.2026-12.com.example:site-a')
    .refine((v) => Buffer.byteLength(v) <= ISCSI_NAME_MAX_BYTES - TARGET_SUFFIX_MAX,
      `at most ${ISCSI_NAME_MAX_BYTES - TARGET_SUFFIX_MAX} characters (target names add up to ${TARGET_SUFFIX_MAX})`)
    .optional(),
  chap: chapSchema.optional(),
  initiators: initiators.optional(),
});

export const volumeIscsiSchema = z.strictObject({
  chap: chapSchema.optional(),
  initiators: initiators.optional(),
});

export interface IscsiConfig {
  listen: ListenAddress & { kind: 'tcp' };
  /** The base IQN (lower case). */
  iqn: string;
  /** Who may log in to discovery, and to every target without an override. */
  auth: IscsiAuth;
}

type ChapInput = z.infer<typeof chapSchema>;

function authOf(chap: ChapInput | undefined, list: string[] | undefined): IscsiAuth {
  const one: ChapSecret | null = chap ? { user: chap.user, secret: chap.secret } : null;
  const mutual: ChapSecret | null = chap?.mutual_user !== undefined && chap.mutual_secret !== undefined
    ? { user: chap.mutual_user, secret: chap.mutual_secret }
    : null;
  return { chap: one, mutual, initiators: list ?? null };
}

/** The parsed node section. The default base name is iqn.2026-12.offsite.invalid:NODE (docs/ISCSI.md: set your own). */
export function iscsiConfigOf(raw: z.infer<typeof iscsiSchema>, node: string): IscsiConfig {
  return {
    listen: raw.listen,
    iqn: raw.iqn ?? `iqn.2026-12.offsite.invalid:${targetPart(node)}`,
    auth: authOf(raw.chap, raw.initiators),
  };
}

/** A volume's auth: its own `iscsi:` keys override the node's, key by key. */
export function volumeAuthOf(node: IscsiAuth, raw: z.infer<typeof volumeIscsiSchema> | undefined): IscsiAuth {
  if (!raw) return node;
  const own = authOf(raw.chap, raw.initiators);
  return {
    chap: raw.chap ? own.chap : node.chap,
    mutual: raw.chap ? own.mutual : node.mutual,
    initiators: raw.initiators ? own.initiators : node.initiators,
  };
}

/** A volume or node name as a part of an iSCSI name: lower case, "_" as "-" (iSCSI names have no "_"). */
export function targetPart(name: string): string {
  return name.toLowerCase().replace(/_/g, '-');
}

/**
 * The target name of an export: BASE:volume for a volume (or its replica),
 * BASE:volume:checkpoint and BASE:volume:drill for VOLUME@checkpoint and VOLUME@drill.
 */
export function targetNameOf(base: string, exportName: string): string {
  const at = exportName.indexOf('@');
  if (at < 0) return `${base}:${targetPart(exportName)}`;
  return `${base}:${targetPart(exportName.slice(0, at))}:${exportName.slice(at + 1)}`;
}
