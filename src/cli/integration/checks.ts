import type { Check } from './check.ts';
import { ECHO_CHECKS } from './echo-checks.ts';
import { REFUSAL_CHECKS } from './refusal-checks.ts';
import { SERVICE_CHECKS } from './service-checks.ts';
import { UPLOAD_CHECKS } from './upload-checks.ts';

/** Every check of `test-integration`, in the order they run (later ones need earlier ones). */
export const CHECKS: readonly Check[] = [
  ...SERVICE_CHECKS,
  ...UPLOAD_CHECKS,
  ...ECHO_CHECKS,
  ...REFUSAL_CHECKS,
];
