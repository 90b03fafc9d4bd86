/** Browser-side audio helpers: formats, checksums, and durations MediaRecorder leaves unknown. */

const EXTENSION_BY_TYPE: Readonly<Record<string, string>> = {
  'audio/webm': 'webm',
  'video/webm': 'webm',
  'audio/wav': 'wav',
  'audio/x-wav': 'wav',
  'audio/wave': 'wav',
  'audio/mpeg': 'mp3',
  'audio/mp3': 'mp3',
  'audio/mp4': 'm4a',
  'audio/x-m4a': 'm4a',
  'audio/ogg': 'ogg',
  'audio/flac': 'flac',
  'audio/x-flac': 'flac',
  'audio/aac': 'aac',
};

const TYPE_BY_EXTENSION: Readonly<Record<string, string>> = {
  webm: 'audio/webm',
  wav: 'audio/wav',
  mp3: 'audio/mpeg',
  m4a: 'audio/mp4',
  ogg: 'audio/ogg',
  flac: 'audio/flac',
  aac: 'audio/aac',
};

/** MediaRecorder types worth trying, best first (the API accepts parameters as they are). */
export const RECORDING_TYPES = [
  'audio/webm;codecs=opus',
  'audio/webm',
  'audio/ogg;codecs=opus',
  'audio/mp4',
];

export interface UploadFormat {
  readonly extension: string;
  readonly contentType: string;
}

/** What to tell the API about a recording or file; undefined when it is no supported audio. */
export function uploadFormat(type: string, fileName = ''): UploadFormat | undefined {
  const base = type.split(';')[0]?.trim().toLowerCase() ?? '';
  const fromType = EXTENSION_BY_TYPE[base];
  if (fromType) {
    // video/webm is what some browsers call an audio-only webm file.
    return { extension: fromType, contentType: base === 'video/webm' ? 'audio/webm' : type };
  }
  const ext = /\.([A-Za-z0-9]+)$/.exec(fileName)?.[1]?.toLowerCase();
  const byExt = ext ? TYPE_BY_EXTENSION[ext] : undefined;
  return ext && byExt ? { extension: ext, contentType: byExt } : undefined;
}

/** Base64 SHA-256, or undefined where crypto.subtle is missing (pages not on https or localhost). */
export async function sha256Base64(blob: Blob): Promise<string | undefined> {
  if (!globalThis.crypto?.subtle) return undefined;
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer()));
  let binary = '';
  for (const byte of digest) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/**
 * MediaRecorder's webm has no duration in its header, so browsers report Infinity until they
 * have seen the end. Seeking far past the end makes them read it; then go back to the start.
 */
export function settleDuration(audio: HTMLAudioElement): void {
  const publish = (): void => {
    if (Number.isFinite(audio.duration) && audio.duration > 0) {
      audio.dataset.duration = audio.duration.toFixed(2);
      audio.dispatchEvent(new Event('durationknown'));
    }
  };
  audio.addEventListener(
    'loadedmetadata',
    () => {
      if (audio.duration !== Infinity) {
        publish();
        return;
      }
      const restore = (): void => {
        if (!Number.isFinite(audio.duration)) return;
        audio.removeEventListener('durationchange', restore);
        audio.currentTime = 0;
        publish();
      };
      audio.addEventListener('durationchange', restore);
      audio.currentTime = 1e101;
    },
    { once: true },
  );
}

export function formatSeconds(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
