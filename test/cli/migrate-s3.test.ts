import { describe, it } from 'vitest';
import { describeMigrateAcceptance, motoSide } from '../support/migrate-acceptance.ts';

// Issue 16's acceptance on S3: a legacy bucket into the service's bucket on moto_server.
// .ci/run runs it on its first Node only (CI_SECOND_NODE=1 on the second): the argument is there.
if (process.env['CI_SECOND_NODE'] === '1') {
  describe.skip('migrate: 1,000 legacy objects, S3 on moto (on the first Node of .ci/run only)', () => {
    it('runs on the first Node');
  });
} else {
  describeMigrateAcceptance(motoSide());
}
