/**
 * The headers a browser may send and read across origins: the app's CORS plugin and the CDK
 * stack's API Gateway CORS (which answers preflights on Lambda) use these same lists. No
 * imports, so the CDK app can load it.
 */
export const CORS_ALLOWED_HEADERS = [
  'Authorization',
  'Content-Type',
  'x-amz-server-side-encryption',
  'x-amz-checksum-sha256',
  'If-None-Match',
  'Range',
  'X-Request-Id',
] as const;

export const CORS_EXPOSED_HEADERS = [
  'Deprecation',
  'Link',
  'ETag',
  'Content-Range',
  'Accept-Ranges',
  'Content-Length',
  'X-Request-Id',
  'Retry-After',
  'RateLimit-Limit',
  'RateLimit-Remaining',
  'RateLimit-Reset',
  'Content-Disposition',
] as const;
