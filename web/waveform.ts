/** What the server measured of an echo, drawn: its decoded duration and its waveform bars. */

const SVG = 'http://www.w3.org/2000/svg';
/** viewBox units per bar, and the bar's share of it (the rest is the gap). */
const PITCH = 3;
const BAR = 2;
const HEIGHT = 40;

/** The measured duration as people read it: "2.98 s", "1:02.50" past a minute. */
export function formatMeasured(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(2)} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes}:${(seconds - minutes * 60).toFixed(2).padStart(5, '0')}`;
}

function clamp01(value: number): number {
  return Number.isFinite(value) ? Math.min(1, Math.max(0, value)) : 0;
}

/**
 * The echo's peaks as mirrored bars, one <rect> each, exactly as tall as the peak (silence
 * draws nothing but the centre line). Clicking seeks `audio`; bars already played are marked.
 */
export function waveformSvg(
  peaks: readonly number[],
  audio: HTMLAudioElement,
  measuredSeconds: number | null,
  label: string,
): SVGSVGElement {
  const svg = document.createElementNS(SVG, 'svg');
  svg.classList.add('waveform');
  svg.setAttribute('viewBox', `0 0 ${peaks.length * PITCH} ${HEIGHT}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  svg.dataset.waveformBars = String(peaks.length);
  svg.dataset.peaks = peaks.join(',');

  const baseline = document.createElementNS(SVG, 'line');
  baseline.classList.add('baseline');
  baseline.setAttribute('x1', '0');
  baseline.setAttribute('x2', String(peaks.length * PITCH));
  baseline.setAttribute('y1', String(HEIGHT / 2));
  baseline.setAttribute('y2', String(HEIGHT / 2));
  svg.append(baseline);

  const bars = peaks.map((peak, i) => {
    const height = clamp01(peak) * HEIGHT;
    const rect = document.createElementNS(SVG, 'rect');
    rect.classList.add('bar');
    rect.setAttribute('x', String(i * PITCH));
    rect.setAttribute('y', String((HEIGHT - height) / 2));
    rect.setAttribute('width', String(BAR));
    rect.setAttribute('height', String(height));
    svg.append(rect);
    return rect;
  });

  // MediaRecorder's webm reports Infinity until the browser has read to its end; the
  // server's measurement stands in until then.
  const length = (): number =>
    Number.isFinite(audio.duration) && audio.duration > 0 ? audio.duration : (measuredSeconds ?? 0);
  audio.addEventListener('timeupdate', () => {
    const total = length();
    const played = total > 0 ? Math.floor((audio.currentTime / total) * bars.length) : 0;
    bars.forEach((bar, i) => bar.classList.toggle('played', i < played));
  });
  svg.addEventListener('click', (event) => {
    const total = length();
    const box = svg.getBoundingClientRect();
    if (total <= 0 || box.width <= 0) return;
    audio.currentTime = clamp01((event.clientX - box.left) / box.width) * total;
  });
  return svg;
}
