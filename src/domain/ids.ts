const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** Lower-case UUID v7: 48-bit Unix milliseconds, version, 74 random bits. Sorting by id sorts by time. */
export function uuidV7(nowMs: number, random: Uint8Array): string {
  if (random.length < 10) throw new RangeError('uuidV7 needs 10 random bytes');
  const bytes = new Uint8Array(16);
  let ms = nowMs;
  for (let i = 5; i >= 0; i--) {
    bytes[i] = ms % 256;
    ms = Math.floor(ms / 256);
  }
  bytes.set(random.subarray(0, 10), 6);
  bytes[6] = 0x70 | ((bytes[6] ?? 0) & 0x0f);
  bytes[8] = 0x80 | ((bytes[8] ?? 0) & 0x3f);
  let hex = '';
  for (const b of bytes) hex += HEX[b];
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const UUID_V7_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

export function isEchoId(value: string): boolean {
  return UUID_V7_RE.test(value);
}

export function echoIdTime(echoId: string): Date {
  return new Date(parseInt(echoId.slice(0, 8) + echoId.slice(9, 13), 16));
}

function timeHex(ms: number): string {
  const hex = Math.max(0, Math.min(ms, 2 ** 48 - 1))
    .toString(16)
    .padStart(12, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8)}`;
}

/** Smallest and largest ids that a given millisecond can produce: date filters become id ranges. */
export function echoIdLowerBound(ms: number): string {
  return `${timeHex(ms)}-0000-0000-000000000000`;
}

export function echoIdUpperBound(ms: number): string {
  return `${timeHex(ms)}-ffff-ffff-ffffffffffff`;
}
