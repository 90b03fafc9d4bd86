import { AppError } from './errors.ts';
import type { UploadRejectionReason } from './rejections.ts';

/** Limits that are not per format: the size rules of an upload. */
export function assertDeclaredSize(fileSize: number | undefined, maxBytes: number): void {
  if (fileSize === undefined) return;
  if (!Number.isSafeInteger(fileSize) || fileSize < 1) {
    throw new AppError('INVALID_REQUEST', 'file_size must be a whole number of bytes, at least 1.');
  }
  if (fileSize > maxBytes) {
    throw new AppError(
      'FILE_TOO_LARGE',
      `file_size ${fileSize} is over the limit of ${maxBytes} bytes.`,
    );
  }
}

const BASE64_SHA256_RE = /^[A-Za-z0-9+/]{43}=$/;

export function assertChecksum(checksum: string | undefined): void {
  if (checksum !== undefined && !BASE64_SHA256_RE.test(checksum)) {
    throw new AppError(
      'INVALID_REQUEST',
      'checksum_sha256 must be the base64 of a SHA-256 digest (44 characters ending in "=").',
    );
  }
}

export type StoredObjectProblem = Extract<
  UploadRejectionReason,
  'too_large' | 'size_mismatch' | 'wrong_type' | 'not_audio'
>;

/** What is wrong with an uploaded object, or undefined when it can become an echo. */
export function inspectStoredObject(input: {
  size: number;
  maxBytes: number;
  declaredSize: number | undefined;
  storedContentType: string | undefined;
  expectedContentType: string;
  sniffOk: boolean;
}): { problem: StoredObjectProblem; message: string } | undefined {
  if (input.size > input.maxBytes) {
    return {
      problem: 'too_large',
      message: `The upload is ${input.size} bytes, over the limit of ${input.maxBytes}. It was deleted.`,
    };
  }
  if (input.size < 1)
    return {
      problem: 'size_mismatch',
      message: 'The upload is empty. It was deleted; upload the audio again.',
    };
  if (input.declaredSize !== undefined && input.size !== input.declaredSize) {
    return {
      problem: 'size_mismatch',
      message: `The upload is ${input.size} bytes but ${input.declaredSize} were declared. It was deleted.`,
    };
  }
  if (
    input.storedContentType !== undefined &&
    input.storedContentType !== input.expectedContentType
  ) {
    return {
      problem: 'wrong_type',
      message: `The upload was stored as "${input.storedContentType}", not "${input.expectedContentType}". It was deleted.`,
    };
  }
  if (!input.sniffOk) {
    return {
      problem: 'not_audio',
      message: `The uploaded bytes are not ${input.expectedContentType} audio. It was deleted; upload a real file of that format.`,
    };
  }
  return undefined;
}
