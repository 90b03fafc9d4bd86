import { Type, type Static } from '@sinclair/typebox';

export const ErrorDetailSchema = Type.Object({ code: Type.String(), message: Type.String() });

/** Every non-2xx answer of the API: `{"error":{"code","message"}}`. */
export const ErrorBodySchema = Type.Object({ error: ErrorDetailSchema });
export type ErrorBody = Static<typeof ErrorBodySchema>;
