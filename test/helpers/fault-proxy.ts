// A fault-injecting TCP proxy for the peer link: it forwards bytes both ways and,
// on a seeded schedule, cuts the connection, stalls it, throttles it or flips a byte.
import net from 'node:net';

export interface FaultCounts {
  cut: number;
  stall: number;
  throttle: number;
  flip: number;
  connections: number;
}

export class FaultProxy {
  readonly counts: FaultCounts = { cut: 0, stall: 0, throttle: 0, flip: 0, connections: 0 };
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  faults = true;
  port = 0;
  private seed: number;

  constructor(private readonly upstreamPort: number, seed = 1) {
    this.seed = seed;
  }

  private rand(): number {
    this.seed = (this.seed * 1103515245 + 12345) % 2 ** 31;
    return this.seed / 2 ** 31;
  }

  async start(): Promise<number> {
    this.server = net.createServer((down) => this.accept(down));
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  private accept(down: net.Socket): void {
    this.counts.connections++;
    const up = net.connect(this.upstreamPort, '127.0.0.1');
    for (const s of [down, up]) {
      this.sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        this.sockets.delete(s);
        down.destroy();
        up.destroy();
      });
    }
    let delayMs = 0;
    let stalledUntil = 0;
    let flipNext = false;
    const forward = (from: net.Socket, to: net.Socket): void => {
      from.on('data', (chunk: Buffer) => {
        let data = chunk;
        if (flipNext && data.length > 0) {
          flipNext = false;
          data = Buffer.from(data);
          const i = Math.floor(this.rand() * data.length);
          data[i] = data[i]! ^ 0x20;
        }
        const wait = Math.max(delayMs, stalledUntil - Date.now());
        if (wait > 0) {
          from.pause();
          setTimeout(() => {
            to.write(data);
            from.resume();
          }, wait);
        } else {
          to.write(data);
        }
      });
    };
    forward(down, up);
    forward(up, down);
    const schedule = (): void => {
      setTimeout(() => {
        if (down.destroyed) return;
        if (!this.faults) return schedule();
        const r = this.rand();
        if (r < 0.15) {
          this.counts.cut++;
          down.destroy();
          up.destroy();
          return;
        }
        if (r < 0.45) {
          this.counts.flip++;
          flipNext = true;
        } else if (r < 0.75) {
          this.counts.stall++;
          stalledUntil = Date.now() + 200 + this.rand() * 1500;
        } else {
          this.counts.throttle++;
          delayMs = this.rand() < 0.5 ? 0 : Math.floor(this.rand() * 30);
        }
        schedule();
      }, 20 + this.rand() * 120);
    };
    schedule();
  }

  get total(): number {
    return this.counts.cut + this.counts.stall + this.counts.throttle + this.counts.flip;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
