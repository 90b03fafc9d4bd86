import {
  describeMigrateAcceptance,
  describeMigrateDecoding,
  localSide,
} from '../support/migrate-acceptance.ts';
import { requireFfmpeg } from '../support/ffmpeg.ts';

// Issue 16's acceptance on the embedded default: a folder of legacy files into the local store + SQLite.
describeMigrateAcceptance(localSide());
describeMigrateDecoding(await requireFfmpeg('migrate with decoding on'));
