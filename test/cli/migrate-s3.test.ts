import { describeMigrateAcceptance, motoSide } from '../support/migrate-acceptance.ts';

// Issue 16's acceptance on S3: a legacy bucket into the service's bucket on moto_server.
describeMigrateAcceptance(motoSide());
