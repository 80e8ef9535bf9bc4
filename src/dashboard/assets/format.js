// Numbers for people, worded as the CLI words them (src/units/units.ts, src/rate/rate.ts).

/** 1.5 MiB */
export function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** A link rate in bits: 12.5 Mbit/s */
export function rate(bytesPerSecond) {
  const bits = bytesPerSecond * 8;
  if (bits >= 1e9) return `${(bits / 1e9).toFixed(1)} Gbit/s`;
  if (bits >= 1e6) return `${(bits / 1e6).toFixed(1)} Mbit/s`;
  return `${(bits / 1e3).toFixed(0)} kbit/s`;
}

/** 3 h 12 min, 45 s */
export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** 14:03:27 (local time) */
export function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

/** 2025-11-26 14:03 (local time) */
export function dateTime(ms) {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** 2025-11-26 14:03:27 (local time): a restore point's time, to the second. */
export function dateTimeSeconds(ms) {
  const d = new Date(ms);
  return `${dateTime(ms)}:${String(d.getSeconds()).padStart(2, '0')}`;
}

/** The value of an <input type="datetime-local" step="1"> for a time: 2025-11-26T14:03:27 (local time). */
export function localInput(ms) {
  return dateTimeSeconds(ms).replace(' ', 'T');
}

/** Creates an element with a class and text. */
export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
