import { Type, type Static } from '@sinclair/typebox';
import { Nullable, strict } from './conventions.ts';

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

/** POST /me/exports (202) and GET /me/exports/{export_id}: an asynchronous export of your data. */
export const ExportJobSchema = Type.Object({
  export_id: Type.String({ description: 'a UUID v7' }),
  status: Type.Union([Type.Literal('pending'), Type.Literal('ready'), Type.Literal('failed')], {
    description:
      'pending while the zip is built; failed when it could not be (or its build stopped answering for 15 minutes): request a new one',
  }),
  created_at: Type.String({ format: 'date-time' }),
  size: Nullable(Type.Integer({ minimum: 0, description: 'bytes of the zip; null until ready' })),
  download_url: Nullable(
    Type.String({
      description:
        'a signed GET of the zip (the layout of GET /me/export), only when ready; it expires, so GET the export again for a fresh one',
    }),
  ),
  expires_at: Nullable(
    Type.String({
      format: 'date-time',
      description: 'when the zip is deleted (24 hours after it was ready); null until ready',
    }),
  ),
});
export type ExportJob = Static<typeof ExportJobSchema>;

/** POST /me/exports (202): the export just started, as the contract words it. */
export const ExportAcceptedSchema = Type.Object({
  export_id: ExportJobSchema.properties.export_id,
  status: Type.Literal('pending'),
  created_at: ExportJobSchema.properties.created_at,
});
export type ExportAccepted = Static<typeof ExportAcceptedSchema>;

/** POST /me/exports takes no fields: an empty JSON object, or no body at all. */
export const ExportRequestSchema = Type.Object({}, strict);
export type ExportRequest = Static<typeof ExportRequestSchema>;

export const ExportParamsSchema = Type.Object({ export_id: Type.String() });
export type ExportParams = Static<typeof ExportParamsSchema>;
