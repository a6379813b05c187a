// Small display helpers shared by the pages.

export function age(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '—';
  if (seconds < 1) return 'just now';
  if (seconds < 60) return `${Math.floor(seconds)} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

export function percent(value) {
  return value === null || value === undefined ? '—' : `${Number(value).toFixed(0)} %`;
}

export function memoryPercent(resources) {
  const used = resources?.memory_used_bytes;
  const total = resources?.memory_total_bytes;
  return used && total ? (100 * used) / total : null;
}

export function time(unixSeconds) {
  if (!unixSeconds) return '—';
  return new Date(unixSeconds * 1000).toLocaleString();
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return 'ongoing';
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}
