// Which disk a block device is (docs/CONFIG.md, "A volume's file replaced"). A device
// node's name is the kernel's, given at each boot in the order disks are found: after a
// reboot /dev/sdb may be the disk that was /dev/sdc, and a volume opened at its old name
// would serve another disk to its hosts, or overwrite it with its primary's data. The
// disk's own identity is in sysfs, under /sys/dev/block/MAJOR:MINOR: a SCSI or NVMe
// disk's WWID or serial, a device-mapper volume's UUID (LVM's logical volumes), an md
// array's UUID, a loop device's backing file; a partition is its disk's identity, its
// number and its first sector. A disk sysfs names none of these for (a virtio disk
// given no serial) has no identity here, and is not checked.
import fs from 'node:fs';
import path from 'node:path';

/** The sysfs folder of the block device `rdev` (Linux's dev_t encoding). */
export function sysfsOf(rdev: bigint): string {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return `/sys/dev/block/${major}:${minor}`;
}

/**
 * The identity of the disk at sysfs folder `sys` ("wwid naa.6001405f...", "dm LVM-x4Vb...",
 * "loop /srv/disk.raw offset 0", "... partition 2 at 2048"), or null: sysfs names none.
 */
export function diskIdentity(sys: string): string | null {
  const read = (rel: string): string | null => {
    try {
      const s = fs.readFileSync(path.join(sys, rel), 'utf8').trim();
      return s.length > 0 ? s.slice(0, 1024) : null;
    } catch {
      return null;
    }
  };
  const partition = read('partition');
  if (partition !== null) {
    let disk: string;
    try {
      disk = path.dirname(fs.realpathSync(sys));
    } catch {
      return null;
    }
    const of = diskIdentity(disk);
    return of === null ? null : `${of} partition ${partition} at ${read('start') ?? '?'}`;
  }
  const backing = read('loop/backing_file');
  if (backing !== null) return `loop ${backing} offset ${read('loop/offset') ?? '0'}`;
  const dm = read('dm/uuid');
  if (dm !== null) return `dm ${dm}`;
  const md = read('md/uuid');
  if (md !== null) return `md ${md}`;
  const wwid = read('wwid') ?? read('device/wwid');
  if (wwid !== null) return `wwid ${wwid}`;
  const serial = read('serial') ?? read('device/serial');
  if (serial !== null) return `serial ${serial}`;
  return null;
}

/**
 * A loop device's backing file, by its inode and birth time (ns; 0: the filesystem keeps
 * none), or null: not a loop device, or its file is gone. Its path names the disk (above),
 * but a rename while attached changes the path sysfs shows, and another file restored at
 * the same path keeps it: the file-id compares this instead where both sides have it
 * (src/volume/file-identity.ts).
 */
export function loopBackingOf(sys: string): { ino: bigint; birth: bigint } | null {
  try {
    // (A partition of a loop device: its disk's file.)
    const disk = fs.existsSync(path.join(sys, 'partition')) ? path.dirname(fs.realpathSync(sys)) : sys;
    const file = fs.readFileSync(path.join(disk, 'loop', 'backing_file'), 'utf8').trim();
    if (file.length === 0) return null;
    const st = fs.statSync(file, { bigint: true });
    return { ino: st.ino, birth: st.birthtimeNs };
  } catch {
    return null;
  }
}

/** The identity of the block device `st` is a stat of, or null (none in sysfs). */
export function deviceIdentity(st: fs.BigIntStats): string | null {
  return st.isBlockDevice() ? diskIdentity(sysfsOf(st.rdev)) : null;
}

/**
 * What the kernel counted written to a block device since it booted (the device's sysfs
 * `stat`: sectors written, and sectors discarded where the kernel counts them), with the
 * boot's id. A clean stop writes it down once the volume is closed, and the next open
 * compares (src/volume/file-identity.ts): a disk written while the daemon was stopped
 * (a backup restored with dd, the replica mounted and fsck'd) has more. Every writer
 * counts, whatever the path it used (the device node, a link to it, /dev/mapper), but a
 * reboot starts the counts again: across one, nothing can be told.
 */
export interface DeviceWrites {
  boot: string;
  written: bigint;
  discarded: bigint;
}

/** The device `st` is a stat of: its counts now, or null (a file, or sysfs does not say). */
export function deviceWrites(st: fs.BigIntStats, bootIdFile = '/proc/sys/kernel/random/boot_id'): DeviceWrites | null {
  if (!st.isBlockDevice()) return null;
  try {
    const f = fs.readFileSync(path.join(sysfsOf(st.rdev), 'stat'), 'utf8').trim().split(/\s+/);
    const boot = fs.readFileSync(bootIdFile, 'utf8').trim();
    // (Fields: reads, merged, sectors, ticks; writes, merged, sectors, ticks; in flight, io ticks, queue; then discards since 4.18.)
    if (f.length < 11 || boot.length === 0 || !f.every((x) => /^\d+$/.test(x))) return null;
    return { boot, written: BigInt(f[6]!), discarded: f.length >= 14 ? BigInt(f[13]!) : 0n };
  } catch {
    return null;
  }
}
