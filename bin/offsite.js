#!/usr/bin/env node
// The thread pool carries every disk call (reads, writes, fdatasync, fallocate).
// It must be sized before Node first uses it, so it is set here, before any import.
// This entry is CommonJS (bin/package.json) for that: an ES module entry is loaded
// through the pool, which then starts at its default 4 threads before the entry's
// first line runs, and a setting made there comes too late.
if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = '16';
(async () => {
  // V8's young generation keeps its first size: set before the imports, whose loading
  // would otherwise have grown it already (src/memory/collector.ts).
  const { boundYoungGeneration } = await import('../dist/src/memory/collector.js');
  boundYoungGeneration();
  await import('../dist/src/cli/main.js');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
