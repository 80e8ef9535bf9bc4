// A volume's status as GET /api/v1/status gives it, for tests of what reads it (the
// CLI's status and top, the SNMP mapping): an idle primary, connected, every figure at
// rest; a test names only the fields it is about.
import type { VolumeStatus } from '../../src/contract/status.js';

export function volumeStatus(name: string, over: Partial<VolumeStatus> = {}): VolumeStatus {
  return {
    name, role: 'primary', peer: 'site-b', link: 'connected', backlogBytes: 0, backlogRecords: 0, lagSeconds: 0, consistent: true,
    sizeBytes: 1 << 30, tracking: 'journal', journalUsedBytes: 0, journalCapacityBytes: 1 << 30, epoch: 1, dirtyBytes: 0,
    hostBytes: 0, overflows: 0, uuid: 'u', generation: ['g'], resyncing: false, resyncLeftBytes: 0, resyncTotalBytes: 0,
    resyncBytes: 0, resyncSeededBytes: 0, resyncHashBytes: 0, resyncRateBytesPerSecond: 0, resyncEtaSeconds: 0, checkpoint: null,
    drill: null, applying: null, wireBytes: 0, paused: false, linkRateBytesPerSecond: null, verify: null, shipping: null, iscsi: null, history: null,
    peers: [
      { name: 'site-b', link: 'connected', ackedSeq: 0, backlogBytes: 0, backlogRecords: 0, lagSeconds: 0, resyncing: false, paused: false, detached: false,
        firstSyncWaitsFor: null },
    ],
    ...over,
  };
}
