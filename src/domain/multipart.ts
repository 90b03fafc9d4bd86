/**
 * Multipart uploads (README, "Large and resumable uploads"): the part size is a function of
 * the file size that a client can compute too. At least 5 MiB (S3's smallest part but the last),
 * at most 10,000 parts (S3's limit), rounded up to a whole MiB.
 */
export const MIB = 1024 * 1024;
export const MIN_PART_SIZE = 5 * MIB;
export const MAX_PARTS = 10_000;
/** S3's largest object assembled from parts. */
export const MAX_MULTIPART_FILE_SIZE = 5 * 1024 * MIB;

export function partSize(fileSize: number): number {
  return Math.max(MIN_PART_SIZE, Math.ceil(fileSize / MAX_PARTS / MIB) * MIB);
}

/** Parts of a file of this size; one part when it fits (any size is accepted). */
export function partCount(fileSize: number): number {
  return Math.max(1, Math.ceil(fileSize / partSize(fileSize)));
}

/** The exact size of part `partNumber` (1-based): `partSize` for all but the last. */
export function sizeOfPart(fileSize: number, partNumber: number): number {
  const size = partSize(fileSize);
  const count = partCount(fileSize);
  if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > count) {
    throw new RangeError(`part ${partNumber} is outside 1-${count}`);
  }
  return partNumber < count ? size : fileSize - size * (count - 1);
}
