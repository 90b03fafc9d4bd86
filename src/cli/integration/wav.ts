/**
 * A real, playable WAV (16-bit PCM mono sine tone) made in memory, so the integration suite
 * needs no fixture file and works from an installed package.
 */
export function makeToneWav(
  options: { seconds?: number; sampleRate?: number; frequency?: number } = {},
): Uint8Array {
  const seconds = options.seconds ?? 0.5;
  const sampleRate = options.sampleRate ?? 8000;
  const frequency = options.frequency ?? 440;
  const samples = Math.round(seconds * sampleRate);
  const dataBytes = samples * 2;
  const buffer = new ArrayBuffer(44 + dataBytes);
  const view = new DataView(buffer);
  const ascii = (offset: number, text: string): void => {
    for (let i = 0; i < text.length; i++) view.setUint8(offset + i, text.charCodeAt(i));
  };
  ascii(0, 'RIFF');
  view.setUint32(4, 36 + dataBytes, true);
  ascii(8, 'WAVE');
  ascii(12, 'fmt ');
  view.setUint32(16, 16, true); // fmt chunk size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, sampleRate * 2, true); // byte rate
  view.setUint16(32, 2, true); // block align
  view.setUint16(34, 16, true); // bits per sample
  ascii(36, 'data');
  view.setUint32(40, dataBytes, true);
  for (let i = 0; i < samples; i++) {
    // A short fade in and out keeps the tone from clicking.
    const edge = Math.min(1, i / 200, (samples - i) / 200);
    view.setInt16(
      44 + i * 2,
      Math.round(Math.sin((2 * Math.PI * frequency * i) / sampleRate) * 12000 * edge),
      true,
    );
  }
  return new Uint8Array(buffer);
}
