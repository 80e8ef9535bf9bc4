// The dashboard's files, read once when the API starts: our page (src/dashboard/assets/,
// plain HTML, CSS and JS, found from the package root so the compiled daemon in dist/
// reads the same files) and uPlot from node_modules. Nothing comes from the Internet.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export interface Asset {
  type: string;
  body: Buffer;
}

/** Our own files under src/dashboard/assets/, by the name they are served at (/assets/NAME). */
const OWN = ['index.html', 'dashboard.css', 'app.js', 'format.js', 'chart.js', 'volume.js', 'history.js', 'promote.js', 'actions.js', 'favicon.svg'];

/** uPlot's browser build and stylesheet (the package's dist/ files). */
const UPLOT = ['uPlot.iife.min.js', 'uPlot.min.css'];

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** The folder holding package.json: two levels above this file in src/, three in dist/src/. */
export function packageRoot(from = path.dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'src', 'dashboard', 'assets'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`the dashboard's files (src/dashboard/assets) are not above ${from}`);
  }
}

/** Every file the page needs, by name; throws with what is missing. */
export function loadAssets(root = packageRoot()): Map<string, Asset> {
  const out = new Map<string, Asset>();
  const add = (name: string, file: string): void => {
    out.set(name, { type: TYPES[path.extname(name)] ?? 'application/octet-stream', body: fs.readFileSync(file) });
  };
  for (const name of OWN) add(name, path.join(root, 'src', 'dashboard', 'assets', name));
  const require = createRequire(path.join(root, 'package.json'));
  for (const name of UPLOT) {
    let file: string;
    try {
      file = require.resolve(`uplot/dist/${name}`);
    } catch {
      throw new Error(`uPlot is not installed (${name} not found from ${root}; run npm ci)`);
    }
    add(name, file);
  }
  return out;
}
