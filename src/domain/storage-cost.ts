/** S3 Standard in us-east-1, USD per GB-month (first 50 TB), the default of `report --price-per-gb-month`. */
export const DEFAULT_PRICE_PER_GB_MONTH = 0.023;

/** AWS bills storage in GB of 10^9 bytes, not GiB. */
const GB = 1e9;

/** What `bytes` cost a month at `pricePerGbMonth`, in the price's currency (unrounded: rounding is for display). */
export function monthlyCost(bytes: number, pricePerGbMonth: number): number {
  return (bytes / GB) * pricePerGbMonth;
}

/**
 * Upper bounds of the size distribution's buckets: voice recordings run from a few KiB (a word
 * in Opus) to MAX_AUDIO_FILE_SIZE (10 MiB by default, minutes of WAV); each bucket is 4x the last.
 */
export const SIZE_BUCKET_BOUNDS = [
  16 * 1024,
  64 * 1024,
  256 * 1024,
  1024 * 1024,
  4 * 1024 * 1024,
] as const;

/** Index of the bucket `bytes` falls in: below a bound, or the last bucket (that bound and more). */
export function sizeBucketIndex(bytes: number): number {
  const i = SIZE_BUCKET_BOUNDS.findIndex((bound) => bytes < bound);
  return i === -1 ? SIZE_BUCKET_BOUNDS.length : i;
}
