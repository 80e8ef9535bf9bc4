// What the CLI needs of offsite.yaml to talk to its node's running daemon: the node's
// name, its state folder (the API token, the node's certificate) and the API listener
// (and whether it speaks HTTPS). Read with the YAML
// parser alone, so a command that only calls the API starts at once (bench/cli.ts);
// the daemon validated the whole file when it started. Anything unexpected here is
// handed to the full loader, whose error names the file and line.
import fs from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { parseListenAddress, type ListenAddress } from '../export/listen-address.js';

export interface ClientConfig {
  file: string;
  node: string;
  /** Absolute. */
  state: string;
  api: ListenAddress | null;
  /** api_tls: reach the API over HTTPS, pinning the node's own certificate (state/node.crt). */
  apiTls: boolean;
}

export function defaultConfigPath(): string {
  return process.env.OFFSITE_CONFIG ?? './offsite.yaml';
}

export async function loadClientConfig(file: string): Promise<ClientConfig> {
  const light = readLight(file);
  if (light) return light;
  // Let the full loader say what is wrong (it throws a ConfigError with the line).
  const { loadConfig } = await import('./config.js');
  const c = loadConfig(file);
  return { file: c.file, node: c.node, state: c.state, api: c.api ?? null, apiTls: c.apiTls };
}

function readLight(file: string): ClientConfig | null {
  let raw: unknown;
  try {
    raw = parse(fs.readFileSync(file, 'utf8'), { uniqueKeys: true });
  } catch {
    return null;
  }
  if (typeof raw !== 'object' || raw === null) return null;
  const o = raw as Record<string, unknown>;
  if (typeof o.node !== 'string' || typeof o.state !== 'string' || o.state === '') return null;
  if (o.api !== undefined && typeof o.api !== 'string') return null;
  if (o.api_tls !== undefined && typeof o.api_tls !== 'boolean') return null;
  let api: ListenAddress | null = null;
  try {
    if (typeof o.api === 'string') api = parseListenAddress(o.api);
  } catch {
    return null;
  }
  return { file, node: o.node, state: path.resolve(path.dirname(file), o.state), api, apiTls: o.api_tls === true };
}
