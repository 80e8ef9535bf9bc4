#!/usr/bin/env node
// The thread pool carries every disk call (reads, writes, fdatasync, fallocate).
// It must be sized before Node first uses it, so it is set here, before any import.
if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = '16';
await import('../dist/src/cli/main.js');
