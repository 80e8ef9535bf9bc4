#!/usr/bin/env node
// Serves test volumes over iSCSI for manual runs: node scripts/iscsi-serve.js [port]
import { startTestTarget } from '../dist/test/helpers/iscsi-target.js';
import { createLogger } from '../dist/src/log/log.js';
const t = await startTestTarget([{ name: 'disk', size: 64 * 1024 * 1024 }], { log: createLogger({ level: process.env.LOG ?? 'info', format: 'text' }) });
console.log(`listening on ${t.port}: ${t.url('disk')}`);
process.on('SIGINT', () => t.close().then(() => process.exit(0)));
