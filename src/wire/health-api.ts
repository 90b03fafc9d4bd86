import { Type, type Static } from '@sinclair/typebox';
import { strict } from './conventions.ts';
import { ErrorDetailSchema } from './errors.ts';

// Health, readiness and dev tokens: the routes outside the echo API proper.

export const HealthSchema = Type.Object({
  status: Type.String(),
  storage: Type.String(),
  metadata: Type.String(),
  decoder: Type.String({
    description:
      'the audio decoder in use, e.g. "ffmpeg 7.1.2", or "off (music-metadata headers only)"',
  }),
});
export type Health = Static<typeof HealthSchema>;

/** 200 when both backends answer; 503 with the same fields and an error otherwise. */
export const ReadinessSchema = Type.Object({
  status: Type.String(),
  storage: Type.String(),
  metadata: Type.String(),
  error: Type.Optional(ErrorDetailSchema),
});
export type Readiness = Static<typeof ReadinessSchema>;

export const DevTokenRequestSchema = Type.Object(
  { user_id: Type.String({ maxLength: 128 }) },
  strict,
);
export type DevTokenRequest = Static<typeof DevTokenRequestSchema>;

export const DevTokenSchema = Type.Object({
  token: Type.String(),
  user_id: Type.String(),
  expires_in: Type.Integer(),
});
export type DevToken = Static<typeof DevTokenSchema>;
