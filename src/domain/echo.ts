export type EchoStatus = 'pending' | 'ready' | 'deleting';

export interface Location {
  readonly lat: number;
  readonly lng: number;
}

export interface EchoMetadata {
  readonly emotion: string | null;
  readonly tags: readonly string[];
  readonly caption: string | null;
  readonly durationSeconds: number | null;
  readonly location: Location | null;
}

/** One echo as the repositories store it, in every state of its life. */
export interface EchoRecord extends EchoMetadata {
  readonly userId: string;
  readonly echoId: string;
  readonly key: string;
  readonly extension: string;
  /** Base content type, validated against the format. */
  readonly contentType: string;
  /** Exact Content-Type header the upload was signed with (may carry parameters). */
  readonly uploadContentType: string;
  readonly declaredSize: number | null;
  readonly checksumSha256: string | null;
  /** Verified size once ready. */
  readonly fileSize: number | null;
  readonly status: EchoStatus;
  readonly createdAt: Date;
  /** When the upload URL stops working; only meaningful while pending. */
  readonly expiresAt: Date;
}

export const EMPTY_METADATA: EchoMetadata = {
  emotion: null,
  tags: [],
  caption: null,
  durationSeconds: null,
  location: null,
};
