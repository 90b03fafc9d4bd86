import { describe, expect, it } from 'vitest';
import {
  AppError,
  assertChecksum,
  assertContentTypeMatches,
  assertDeclaredSize,
  decodeCursor,
  echoIdLowerBound,
  echoIdTime,
  echoIdUpperBound,
  encodeCursor,
  formatForExtension,
  inspectStoredObject,
  isEchoId,
  isEchoKeyOf,
  isSafeUserId,
  listBounds,
  objectKey,
  parseContentType,
  parseDateBound,
  parseObjectKey,
  sniffMatches,
  uuidV7,
} from '../../src/domain/index.ts';
import {
  audiowaveformJson,
  decodePeaks,
  encodePeaks,
  resamplePeaks,
} from '../../src/domain/waveform.ts';

const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (err) {
    return err instanceof AppError ? err.code : `not an AppError: ${String(err)}`;
  }
  return undefined;
};

describe('formats', () => {
  it('accepts every supported extension case-insensitively', () => {
    for (const ext of ['webm', 'WAV', 'Mp3', 'm4a', 'ogg', 'flac', 'aac']) {
      expect(formatForExtension(ext).extension).toBe(ext.toLowerCase());
    }
  });

  it('refuses unknown extensions and anything that is not bare', () => {
    for (const ext of ['exe', '.webm', 'a/b', '../wav', 'webm ', '', 'wav\u0000']) {
      expect(code(() => formatForExtension(ext))).toBe('UNSUPPORTED_FORMAT');
    }
  });

  it('matches content types, aliases and parameters to the extension', () => {
    const wav = formatForExtension('wav');
    for (const ct of ['audio/wav', 'audio/x-wav', 'audio/wave', 'AUDIO/WAV']) {
      expect(code(() => assertContentTypeMatches(wav, parseContentType(ct)))).toBeUndefined();
    }
    expect(code(() => assertContentTypeMatches(wav, parseContentType('audio/mpeg')))).toBe(
      'CONTENT_TYPE_MISMATCH',
    );
    const webm = parseContentType('audio/webm;codecs=opus');
    expect(webm).toEqual({ base: 'audio/webm', header: 'audio/webm;codecs=opus' });
    expect(parseContentType('audio/webm; codecs="opus"').base).toBe('audio/webm');
    expect(parseContentType('audio/webm; codecs="opus, vp9"').base).toBe('audio/webm');
  });

  it('refuses content types that could not be sent as a header', () => {
    for (const ct of [
      'audio',
      'audio/webm\r\nx-evil: 1',
      'audio/webm;',
      'a'.repeat(300),
      'audio/webm;codecs',
      // Quoted values: nothing a header cannot carry or a backend cannot store as given.
      'audio/webm;codecs="op\u0000us"',
      'audio/webm;codecs="\uD800"',
      'audio/webm;codecs="op\nus"',
      'audio/webm;codecs="opüs"',
    ]) {
      expect(code(() => parseContentType(ct))).toBe('INVALID_REQUEST');
    }
  });

  it('knows which sniffed types each format produces', () => {
    expect(sniffMatches(formatForExtension('ogg'), 'opus')).toBe(true);
    expect(sniffMatches(formatForExtension('mp3'), 'wav')).toBe(false);
    expect(sniffMatches(formatForExtension('mp3'), undefined)).toBe(false);
  });
});

describe('ids and keys', () => {
  it('makes lower-case UUID v7 ids that sort by time', () => {
    const a = uuidV7(1_750_000_000_000, new Uint8Array(10).fill(255));
    const b = uuidV7(1_750_000_000_001, new Uint8Array(10));
    expect(isEchoId(a)).toBe(true);
    expect(isEchoId(b)).toBe(true);
    expect(a < b).toBe(true);
    expect(echoIdTime(a).getTime()).toBe(1_750_000_000_000);
    expect(isEchoId(a.toUpperCase())).toBe(false);
    expect(isEchoId('not-an-id')).toBe(false);
  });

  it('bounds ids of a millisecond from both sides', () => {
    const id = uuidV7(1_750_000_000_000, new Uint8Array(10).fill(7));
    expect(echoIdLowerBound(1_750_000_000_000) <= id).toBe(true);
    expect(echoIdUpperBound(1_750_000_000_000) >= id).toBe(true);
    expect(echoIdUpperBound(1_749_999_999_999) < id).toBe(true);
  });

  it('lays keys out by user and UTC date', () => {
    const id = uuidV7(Date.UTC(2025, 5, 28, 23, 59), new Uint8Array(10));
    const key = objectKey('user123', new Date(Date.UTC(2025, 5, 28, 23, 59)), id, 'WEBM');
    expect(key).toBe(`user123/2025/06/28/${id}.webm`);
    expect(parseObjectKey(key)).toEqual({ userId: 'user123', echoId: id, extension: 'webm' });
    expect(parseObjectKey('elsewhere/readme.txt')).toBeUndefined();
  });

  it('parses only keys the service can have written: erasure and cleanup delete nothing else', () => {
    const id = uuidV7(Date.UTC(2024, 0, 1), new Uint8Array(10));
    expect(isEchoKeyOf(`audio/2024/01/01/${id}.wav`, 'audio')).toBe(true);
    expect(isEchoKeyOf(`audio/2024/01/01/${id}.wav`, 'Audio')).toBe(false);
    for (const foreign of [
      'audio/alice/x.wav',
      'audio/2024/01/01/not-a-uuid.wav',
      `audio/2024/01/01/${id}.xyz`,
      `audio/2024/01/01/${id}.WAV`,
      'audio/2024/01/01/3f2504e0-4f89-41d3-9a0c-0305e82c3301.wav',
      `audio/2024/13/01/${id}.wav`,
      `audio/2024/00/01/${id}.wav`,
      `audio/2024/01/32/${id}.wav`,
      `audio/2024/01/01/${id}.wav/x`,
      `audio/x/2024/01/01/${id}.wav`,
      `audio/2024/01/01/${id.toUpperCase()}.wav`,
    ])
      expect(parseObjectKey(foreign), foreign).toBeUndefined();
  });

  it('accepts only safe user ids', () => {
    for (const ok of ['alice', 'auth0|123', 'a.b@c-d_e', 'x'.repeat(128)])
      expect(isSafeUserId(ok)).toBe(true);
    for (const bad of ['.', '..', '', 'a/b', 'a b', 'x'.repeat(129), 'é', 42, undefined])
      expect(isSafeUserId(bad)).toBe(false);
  });
});

describe('upload policy', () => {
  it('checks declared size and checksum', () => {
    expect(code(() => assertDeclaredSize(undefined, 10))).toBeUndefined();
    expect(code(() => assertDeclaredSize(10, 10))).toBeUndefined();
    expect(code(() => assertDeclaredSize(11, 10))).toBe('FILE_TOO_LARGE');
    expect(code(() => assertDeclaredSize(0, 10))).toBe('INVALID_REQUEST');
    expect(code(() => assertDeclaredSize(1.5, 10))).toBe('INVALID_REQUEST');
    expect(
      code(() => assertChecksum('47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=')),
    ).toBeUndefined();
    expect(code(() => assertChecksum('abc'))).toBe('INVALID_REQUEST');
  });

  it('names what is wrong with a stored object, in order', () => {
    const ok = {
      size: 10,
      maxBytes: 100,
      declaredSize: 10,
      storedContentType: 'audio/wav',
      expectedContentType: 'audio/wav',
      sniffOk: true,
    };
    expect(inspectStoredObject(ok)).toBeUndefined();
    expect(inspectStoredObject({ ...ok, size: 101, declaredSize: undefined })?.problem).toBe(
      'too_large',
    );
    expect(inspectStoredObject({ ...ok, size: 9 })?.problem).toBe('size_mismatch');
    expect(inspectStoredObject({ ...ok, storedContentType: 'audio/mpeg' })?.problem).toBe(
      'wrong_type',
    );
    expect(inspectStoredObject({ ...ok, sniffOk: false })?.problem).toBe('not_audio');
    expect(inspectStoredObject({ ...ok, storedContentType: undefined })).toBeUndefined();
  });
});

describe('listing', () => {
  it('round-trips cursors and refuses foreign ones', () => {
    const id = uuidV7(Date.now(), new Uint8Array(10));
    expect(decodeCursor(encodeCursor(id))).toBe(id);
    const foreign = [
      'abc',
      '',
      '!!!',
      Buffer.from('{"v":1,"before":"x"}').toString('base64url'),
      Buffer.from('{"v":2}').toString('base64url'),
      'a'.repeat(500),
    ];
    for (const c of foreign) expect(code(() => decodeCursor(c))).toBe('INVALID_REQUEST');
  });

  it('makes a date-only `to` cover the whole day and refuses bad dates', () => {
    expect(parseDateBound('from', '2026-06-28')).toBe(Date.UTC(2026, 5, 28));
    expect(parseDateBound('to', '2026-06-28')).toBe(Date.UTC(2026, 5, 29) - 1);
    expect(parseDateBound('to', '2026-06-28T10:00:00Z')).toBe(Date.UTC(2026, 5, 28, 10));
    expect(parseDateBound('from', '2026-06-28T12:00:00+02:00')).toBe(Date.UTC(2026, 5, 28, 10));
    for (const bad of ['2026-02-30', 'yesterday', '2026-6-1', '2026-06-28T25:00:00Z', '']) {
      expect(code(() => parseDateBound('from', bad))).toBe('INVALID_REQUEST');
    }
    expect(code(() => listBounds('2026-06-29', '2026-06-28'))).toBe('INVALID_REQUEST');
  });
});

describe('waveforms from upload-time peaks', () => {
  const peaks = Array.from({ length: 1000 }, (_, i) => Math.round((i / 999) * 1000) / 1000);

  it('stores peaks as whole thousandths and reads them back exactly, clamping what is out of range', () => {
    expect(decodePeaks(encodePeaks(peaks))).toEqual(peaks);
    expect(encodePeaks(peaks)).toHaveLength(2000);
    expect(decodePeaks(encodePeaks([-1, 2, Number.NaN, 0.5]))).toEqual([0, 1, 0, 0.5]);
  });

  it('resamples to the largest peak of each share, and repeats a slice when asked for more points', () => {
    const bars = resamplePeaks(peaks, 100);
    expect(bars).toHaveLength(100);
    expect(bars[0]).toBe(peaks[9]);
    expect(bars[99]).toBe(1);
    const wide = resamplePeaks([0.1, 0.2], 4);
    expect(wide).toEqual([0.1, 0.1, 0.2, 0.2]);
    expect(resamplePeaks([0.5, 0.1, 0.3], 2)).toEqual([0.5, 0.3]);
  });

  it('answers audiowaveform v2, 8 bits: min and max per point, samples per pixel from the duration', () => {
    const doc = audiowaveformJson(peaks, 48000, 2.5, 10);
    expect(doc).toMatchObject({
      version: 2,
      channels: 1,
      sample_rate: 48000,
      bits: 8,
      length: 10,
      samples_per_pixel: 12000,
    });
    expect(doc.data).toHaveLength(20);
    expect(doc.data.slice(-2)).toEqual([-127, 127]);
    for (let i = 0; i < 10; i++) expect(doc.data[i * 2]).toBe(-(doc.data[i * 2 + 1] ?? 0));
  });
});
