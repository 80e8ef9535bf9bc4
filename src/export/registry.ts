// The exports a node serves, by name: each volume, VOLUME@checkpoint, VOLUME@drill.
// Every front end (NBD, iSCSI) looks its backends up here; each backend is held to its
// capabilities on every call (src/export/contract.ts).
import type { ExportBackend } from './backend.js';
import { CheckedBackend } from './contract.js';

export class ExportRegistry {
  private readonly byName = new Map<string, ExportBackend>();
  private defaultName: string | null = null;

  /** Serves `backend` under its name, held to its capabilities on every call (src/export/contract.ts). */
  add(backend: ExportBackend, isDefault = false): void {
    this.byName.set(backend.name, backend instanceof CheckedBackend ? backend : new CheckedBackend(backend));
    if (isDefault) this.defaultName = backend.name;
  }

  remove(name: string): void {
    this.byName.delete(name);
    if (this.defaultName === name) this.defaultName = null;
  }

  lookup(name: string): ExportBackend | undefined {
    if (name !== '') return this.byName.get(name);
    if (this.defaultName !== null) return this.byName.get(this.defaultName);
    return this.byName.size === 1 ? [...this.byName.values()][0] : undefined;
  }

  list(): ExportBackend[] {
    return [...this.byName.values()];
  }
}
