import type { EchoStatus } from './echo.ts';

/** What a user holds, as the repositories keep it beside the records. */
export interface AccountUsage {
  /** Ready echoes, and echoes being deleted (their bytes are still stored). */
  readonly echoes: number;
  /** Verified sizes of those echoes. */
  readonly bytesUsed: number;
  /** What open uploads reserved (their `file_size`, or MAX_AUDIO_FILE_SIZE when undeclared). */
  readonly bytesReserved: number;
  /** Pending echoes: upload URLs issued and not yet made echoes. */
  readonly pendingUploads: number;
}

/**
 * What one record adds to its user's usage. A record being deleted counts as what it was: an
 * echo when it was verified (it has a size), else the open upload it was.
 */
export function usageOfRecord(
  status: EchoStatus,
  fileSize: number | null,
  reservedBytes: number | null,
): AccountUsage {
  if (status === 'ready' || (status === 'deleting' && fileSize !== null)) {
    return { echoes: 1, bytesUsed: fileSize ?? 0, bytesReserved: 0, pendingUploads: 0 };
  }
  return { echoes: 0, bytesUsed: 0, bytesReserved: reservedBytes ?? 0, pendingUploads: 1 };
}

export function addUsage(a: AccountUsage, b: AccountUsage, sign: 1 | -1 = 1): AccountUsage {
  return {
    echoes: a.echoes + sign * b.echoes,
    bytesUsed: a.bytesUsed + sign * b.bytesUsed,
    bytesReserved: a.bytesReserved + sign * b.bytesReserved,
    pendingUploads: a.pendingUploads + sign * b.pendingUploads,
  };
}

export function sameUsage(a: AccountUsage, b: AccountUsage): boolean {
  return (
    a.echoes === b.echoes &&
    a.bytesUsed === b.bytesUsed &&
    a.bytesReserved === b.bytesReserved &&
    a.pendingUploads === b.pendingUploads
  );
}

/** Why a reservation does not fit, or undefined when it does; a limit of 0 is none. */
export function reservationProblem(
  usage: AccountUsage,
  bytes: number,
  limits: { readonly quotaBytes: number; readonly maxPendingUploads: number },
): 'quota' | 'pending' | undefined {
  if (limits.maxPendingUploads > 0 && usage.pendingUploads >= limits.maxPendingUploads)
    return 'pending';
  if (limits.quotaBytes > 0 && usage.bytesUsed + usage.bytesReserved + bytes > limits.quotaBytes)
    return 'quota';
  return undefined;
}
