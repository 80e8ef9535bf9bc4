// Writes one section of docs/BENCHMARKS.md, between markers, leaving the others alone.
import fs from 'node:fs';
import os from 'node:os';

const FILE = new URL('../../docs/BENCHMARKS.md', import.meta.url).pathname;

export function machineLine(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, Node.js ${process.version}, ${new Date().toISOString().slice(0, 10)}`;
}

export function writeSection(id: string, markdown: string): void {
  let doc = fs.existsSync(FILE) ? fs.readFileSync(FILE, 'utf8')
    : '# Benchmarks\n\nEvery table comes from one run of the command above it, all peers side by side in the same run.\n' +
      'Numbers from a shared 2-core VM are noisy; compare the columns of one table, not tables of different days.\n';
  const begin = `<!-- bench:${id} -->`;
  const end = `<!-- /bench:${id} -->`;
  const block = `${begin}\n${markdown.trim()}\n${end}`;
  const i = doc.indexOf(begin);
  const j = doc.indexOf(end);
  doc = i >= 0 && j > i ? doc.slice(0, i) + block + doc.slice(j + end.length) : `${doc.trimEnd()}\n\n${block}\n`;
  fs.writeFileSync(FILE, doc);
}
