// The live chart of one volume: the host's write rate beside the link's rate, with
// the link's average and peak over the window drawn as flat lines. That is the
// picture behind the journal: the link needs the average, not the peak.
// Rates come from successive hostBytes and wireBytes counters of the status stream.
import { clock, rate } from './format.js';

/** Points kept: two minutes at one status a second. */
export const WINDOW = 120;

const COLORS = { host: '#d97706', link: '#2563eb', avg: '#0f766e', peak: '#dc2626' };

export class RateChart {
  /**
   * @param {HTMLElement} el the chart's box (its data-samples attribute counts the points)
   * @param {'primary'|'secondary'} role a secondary's link rate is what it received
   */
  constructor(el, role) {
    this.el = el;
    this.role = role;
    this.time = [];
    this.host = [];
    this.link = [];
    this.last = null;
    this.plot = null;
    this.resize = new ResizeObserver(() => this.plot?.setSize(this.size()));
    this.resize.observe(el);
  }

  /** One status sample: t in ms, the volume's byte counters since the daemon started. */
  push(t, hostBytes, wireBytes) {
    const prev = this.last;
    this.last = { t, hostBytes, wireBytes };
    if (!prev || t <= prev.t) return;
    // A counter that went back means the daemon restarted: no rate from this pair.
    if (hostBytes < prev.hostBytes || wireBytes < prev.wireBytes) return;
    const secs = (t - prev.t) / 1000;
    const hostRate = (hostBytes - prev.hostBytes) / secs;
    const linkRate = this.role === 'primary' ? (wireBytes - prev.wireBytes) / secs : hostRate;
    this.time.push(t / 1000);
    this.host.push(this.role === 'primary' ? hostRate : null);
    this.link.push(linkRate);
    if (this.time.length > WINDOW) {
      this.time.shift();
      this.host.shift();
      this.link.shift();
    }
    this.draw();
  }

  /** The link's average and peak over the window (bytes per second). */
  linkStats() {
    const n = this.link.length;
    if (n === 0) return { avg: 0, peak: 0 };
    let sum = 0;
    let peak = 0;
    for (const r of this.link) {
      sum += r;
      if (r > peak) peak = r;
    }
    return { avg: sum / n, peak };
  }

  /** What the page shows, for tests and the curious (window.__offsite.series). */
  series() {
    return { time: [...this.time], host: [...this.host], link: [...this.link], ...this.linkStats() };
  }

  size() {
    return { width: Math.max(240, this.el.clientWidth), height: 190 };
  }

  draw() {
    const { avg, peak } = this.linkStats();
    const flat = [this.time.map(() => avg), this.time.map(() => peak)];
    const data = this.role === 'primary' ? [this.time, this.host, this.link, ...flat] : [this.time, this.link, ...flat];
    this.el.dataset.samples = String(this.time.length);
    this.el.dataset.linkAverage = String(Math.round(avg));
    this.el.dataset.linkPeak = String(Math.round(peak));
    if (!window.uPlot) return;
    if (!this.plot) {
      this.el.textContent = '';
      this.plot = new window.uPlot(this.options(), data, this.el);
    } else {
      this.plot.setData(data);
    }
  }

  options() {
    const linkLabel = this.role === 'primary' ? 'link sends' : 'received over the link';
    const fmt = (_u, v) => (v == null ? '–' : rate(v));
    return {
      ...this.size(),
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
      hooks: {
        // The legend shows the newest values unless the pointer is over the chart.
        setLegend: [(u) => {
          const n = u.data[0].length;
          if (n > 0 && !(u.cursor.left >= 0) && u.legend.idx !== n - 1) u.setLegend({ idx: n - 1 }, false);
        }],
      },
      scales: {
        x: { time: true, range: (_u, min, max) => [Math.min(Math.max(min, max - WINDOW), max - 10), max] },
        y: { range: (_u, _min, max) => [0, Math.max(max, 1024) * 1.1] },
      },
      axes: [
        { stroke: '#475569', grid: { stroke: '#e2e8f0' }, space: 70, values: (_u, ticks) => ticks.map((t) => clock(t * 1000)) },
        { stroke: '#475569', grid: { stroke: '#e2e8f0' }, size: 100, values: (_u, ticks) => ticks.map((v) => rate(v)) },
      ],
      series: [
        { label: 'time', value: (_u, v) => (v == null ? '–' : clock(v * 1000)) },
        ...(this.role === 'primary' ? [{ label: 'host writes', stroke: COLORS.host, width: 2, value: fmt }] : []),
        { label: linkLabel, stroke: COLORS.link, width: 2, value: fmt, fill: 'rgba(37, 99, 235, 0.08)' },
        { label: 'link average', stroke: COLORS.avg, width: 1.5, dash: [6, 4], value: fmt, points: { show: false } },
        { label: 'link peak', stroke: COLORS.peak, width: 1, dash: [2, 3], value: fmt, points: { show: false } },
      ],
    };
  }

  destroy() {
    this.resize.disconnect();
    this.plot?.destroy();
    this.plot = null;
  }
}
