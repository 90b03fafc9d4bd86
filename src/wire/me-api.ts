import { Type, type Static } from '@sinclair/typebox';

// A user's own data: /me and the operator's erase-user.

/** GET /me/usage: what the user holds against their limits (0 = no limit). */
export const UsageSchema = Type.Object({
  user_id: Type.String(),
  echoes: Type.Integer({ minimum: 0 }),
  bytes_used: Type.Integer({ description: 'verified sizes of your echoes' }),
  bytes_reserved: Type.Integer({ description: 'reserved by upload URLs not yet made echoes' }),
  pending_uploads: Type.Integer({ minimum: 0 }),
  quota_bytes: Type.Integer({ minimum: 0, description: 'USER_QUOTA_BYTES; 0 = none' }),
  max_pending_uploads: Type.Integer({
    minimum: 0,
    description: 'USER_MAX_PENDING_UPLOADS; 0 = none',
  }),
});
export type Usage = Static<typeof UsageSchema>;

/** DELETE /me and `erase-user --json`: what was erased, and a second listing's proof that nothing is left. */
export const ErasureReceiptSchema = Type.Object({
  user_id: Type.String(),
  deleted_echoes: Type.Integer(),
  deleted_pending: Type.Integer(),
  deleted_objects: Type.Integer({
    description: 'every echo object removed, uploads never made echoes included',
  }),
  deleted_bytes: Type.Integer(),
  remaining_objects: Type.Integer({ description: 'echo objects still there: 0' }),
  remaining_records: Type.Integer(),
  skipped_objects: Type.Integer({
    description:
      'objects under the user id that are not echo keys (such as legacy audio waiting for migrate): kept, not erased',
  }),
  completed_at: Type.String({ format: 'date-time' }),
});
export type ErasureReceipt = Static<typeof ErasureReceiptSchema>;
