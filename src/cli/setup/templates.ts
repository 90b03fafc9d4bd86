// The config/*.json files are the one source for `echoes-storage setup` and the CDK stack
// (infra/ imports this module), so both build the same CORS, policy and lifecycle.
// Kept free of SDK imports for that reason.
import { readFileSync } from 'node:fs';
import { EXPORTS_PREFIX } from '../../domain/keys.ts';

export const ENVIRONMENTS = ['dev', 'prod'] as const;
export type EnvironmentName = (typeof ENVIRONMENTS)[number];

export interface EnvironmentSettings {
  readonly allowedOrigins: readonly string[];
  readonly abortIncompleteMultipartUploadAfterDays: number;
  readonly audio: {
    readonly standardIaAfterDays: number;
    readonly glacierIrAfterDays: number;
    /** null keeps audio for ever. */
    readonly expireAfterDays: number | null;
  };
  readonly accessLogs: { readonly expireAfterDays: number };
}

/** S3 API shapes (PascalCase, as in the JSON files and the SDK). */
export interface CorsRuleJson {
  readonly ID?: string;
  readonly AllowedHeaders?: string[];
  readonly AllowedMethods: string[];
  readonly AllowedOrigins: string[];
  readonly ExposeHeaders?: string[];
  readonly MaxAgeSeconds?: number;
}

export interface PolicyStatementJson {
  readonly Sid?: string;
  readonly Effect: 'Allow' | 'Deny';
  readonly Principal: string | Record<string, string | string[]>;
  readonly Action: string | string[];
  readonly Resource: string | string[];
  readonly Condition?: Record<string, Record<string, string | string[]>>;
}

export interface PolicyJson {
  readonly Version: string;
  readonly Statement: PolicyStatementJson[];
}

export interface LifecycleRuleJson {
  readonly ID: string;
  readonly Status: 'Enabled';
  readonly Filter: { readonly Prefix: string };
  readonly AbortIncompleteMultipartUpload?: { readonly DaysAfterInitiation: number };
  readonly Transitions?: {
    readonly Days: number;
    readonly StorageClass: 'STANDARD_IA' | 'GLACIER_IR';
  }[];
  readonly Expiration?: { readonly Days: number };
}

export const CONFIG_DIR = new URL('../../../config/', import.meta.url);
/** Where server access logs land inside the log bucket (setup and CDK use the same). */
export const ACCESS_LOG_PREFIX = 'access-logs/';

export { TABLE_KEYS, TTL_ATTRIBUTE } from '../../metadata/dynamodb/table.ts';

export function bucketName(env: EnvironmentName, accountId: string): string {
  return `echoes-audio-${env}-${accountId}`;
}
export function logBucketName(env: EnvironmentName, accountId: string): string {
  return `${bucketName(env, accountId)}-logs`;
}
export function tableName(env: EnvironmentName): string {
  return `echoes-${env}`;
}

function readJson(file: string): unknown {
  const url = new URL(file, CONFIG_DIR);
  try {
    return JSON.parse(readFileSync(url, 'utf8'));
  } catch (err) {
    throw new Error(`config/${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isDays = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 1;

export function environmentSettings(env: EnvironmentName): EnvironmentSettings {
  const all = readJson('environments.json');
  const s = isObject(all) ? all[env] : undefined;
  const bad = (what: string): never => {
    throw new Error(`config/environments.json: "${env}" ${what}`);
  };
  if (!isObject(s)) return bad('is missing');
  const origins = s.allowedOrigins;
  if (
    !Array.isArray(origins) ||
    origins.length === 0 ||
    !origins.every((o) => typeof o === 'string' && o !== '')
  ) {
    bad('needs allowedOrigins: a non-empty list of origins');
  }
  const audio = s.audio;
  const logs = s.accessLogs;
  if (!isDays(s.abortIncompleteMultipartUploadAfterDays))
    bad('needs abortIncompleteMultipartUploadAfterDays >= 1');
  if (!isObject(audio) || !isDays(audio.standardIaAfterDays) || !isDays(audio.glacierIrAfterDays)) {
    bad('needs audio.standardIaAfterDays and audio.glacierIrAfterDays (whole days)');
  }
  const a = audio as Record<string, number>;
  // S3's own minimums: 30 days before STANDARD_IA, 30 more days in it, expiry after the last move.
  if (a.standardIaAfterDays! < 30 || a.glacierIrAfterDays! < a.standardIaAfterDays! + 30) {
    bad('needs audio.standardIaAfterDays >= 30 and glacierIrAfterDays at least 30 days later');
  }
  const expire = (audio as Record<string, unknown>).expireAfterDays;
  if (expire !== null && (!isDays(expire) || expire <= a.glacierIrAfterDays!)) {
    bad('needs audio.expireAfterDays: null (keep) or more days than glacierIrAfterDays');
  }
  if (!isObject(logs) || !isDays(logs.expireAfterDays))
    bad('needs accessLogs.expireAfterDays >= 1');
  return s as unknown as EnvironmentSettings;
}

export interface TemplateValues {
  readonly BUCKET_NAME: string;
  readonly AWS_PARTITION: string;
  readonly ALLOWED_ORIGINS: readonly string[];
}

/**
 * Fills `${NAME}` placeholders. An array element that is exactly `${ALLOWED_ORIGINS}` expands to
 * the list, so the JSON files stay valid S3 documents with the environment's origins left out.
 */
export function fillTemplate<T>(template: T, values: TemplateValues): T {
  const scalar = (s: string): string =>
    s.replace(/\$\{([A-Z_]+)\}/g, (_m, name: string) => {
      const v = (values as unknown as Record<string, unknown>)[name];
      if (typeof v !== 'string') throw new Error(`unknown placeholder \${${name}} in config`);
      return v;
    });
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return scalar(v);
    if (Array.isArray(v))
      return v.flatMap((x) =>
        x === '${ALLOWED_ORIGINS}' ? [...values.ALLOWED_ORIGINS] : [walk(x)],
      );
    if (isObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    return v;
  };
  return walk(template) as T;
}

export function corsTemplate(): CorsRuleJson[] {
  const doc = readJson('s3-cors.json');
  if (!isObject(doc) || !Array.isArray(doc.CORSRules))
    throw new Error('config/s3-cors.json needs a CORSRules list');
  return doc.CORSRules as CorsRuleJson[];
}

export function bucketPolicyTemplate(): PolicyJson {
  const doc = readJson('s3-bucket-policy.json');
  if (!isObject(doc) || !Array.isArray(doc.Statement))
    throw new Error('config/s3-bucket-policy.json needs a Statement list');
  return doc as unknown as PolicyJson;
}

export function corsRules(
  settings: EnvironmentSettings,
  values: Omit<TemplateValues, 'ALLOWED_ORIGINS'>,
): CorsRuleJson[] {
  return fillTemplate(corsTemplate(), { ...values, ALLOWED_ORIGINS: settings.allowedOrigins });
}

export function bucketPolicy(
  settings: EnvironmentSettings,
  values: Omit<TemplateValues, 'ALLOWED_ORIGINS'>,
): PolicyJson {
  return fillTemplate(bucketPolicyTemplate(), {
    ...values,
    ALLOWED_ORIGINS: settings.allowedOrigins,
  });
}

export const LIFECYCLE_IDS = {
  abortMultipart: 'abort-incomplete-multipart-uploads',
  audioTiers: 'audio-storage-classes',
  expireExports: 'expire-exports',
  expireLogs: 'expire-access-logs',
} as const;

/**
 * Where export zips live in the audio bucket (`!exports/{user_id}/{export_id}.zip`): a user id
 * never starts with `!`, so no user's objects are under it. Kept a day (DESIGN: 24 hours), by
 * the bucket itself: the rule below, in both `setup` and the CDK stack.
 */
export { EXPORTS_PREFIX };
export const EXPORTS_EXPIRE_AFTER_DAYS = 1;

export function audioLifecycleRules(s: EnvironmentSettings): LifecycleRuleJson[] {
  return [
    {
      ID: LIFECYCLE_IDS.abortMultipart,
      Status: 'Enabled',
      Filter: { Prefix: '' },
      AbortIncompleteMultipartUpload: {
        DaysAfterInitiation: s.abortIncompleteMultipartUploadAfterDays,
      },
    },
    {
      ID: LIFECYCLE_IDS.audioTiers,
      Status: 'Enabled',
      Filter: { Prefix: '' },
      Transitions: [
        { Days: s.audio.standardIaAfterDays, StorageClass: 'STANDARD_IA' },
        { Days: s.audio.glacierIrAfterDays, StorageClass: 'GLACIER_IR' },
      ],
      ...(s.audio.expireAfterDays === null
        ? {}
        : { Expiration: { Days: s.audio.expireAfterDays } }),
    },
    {
      ID: LIFECYCLE_IDS.expireExports,
      Status: 'Enabled',
      Filter: { Prefix: EXPORTS_PREFIX },
      Expiration: { Days: EXPORTS_EXPIRE_AFTER_DAYS },
    },
  ];
}

export function logLifecycleRules(s: EnvironmentSettings): LifecycleRuleJson[] {
  return [
    {
      ID: LIFECYCLE_IDS.expireLogs,
      Status: 'Enabled',
      Filter: { Prefix: '' },
      Expiration: { Days: s.accessLogs.expireAfterDays },
    },
  ];
}

/**
 * The log bucket's policy: S3's logging service may write (only for our bucket and account),
 * nobody may use plain HTTP. The same statement CDK writes for `serverAccessLogsBucket`.
 */
export function logBucketPolicy(opts: {
  partition: string;
  bucket: string;
  logBucket: string;
  accountId: string;
}): PolicyJson {
  const { partition, bucket, logBucket, accountId } = opts;
  return {
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'S3ServerAccessLogsDelivery',
        Effect: 'Allow',
        Principal: { Service: 'logging.s3.amazonaws.com' },
        Action: 's3:PutObject',
        Resource: `arn:${partition}:s3:::${logBucket}/${ACCESS_LOG_PREFIX}*`,
        Condition: {
          ArnLike: { 'aws:SourceArn': `arn:${partition}:s3:::${bucket}` },
          StringEquals: { 'aws:SourceAccount': accountId },
        },
      },
      {
        Sid: 'DenyInsecureTransport',
        Effect: 'Deny',
        Principal: '*',
        Action: 's3:*',
        Resource: [`arn:${partition}:s3:::${logBucket}`, `arn:${partition}:s3:::${logBucket}/*`],
        Condition: { Bool: { 'aws:SecureTransport': 'false' } },
      },
    ],
  };
}
