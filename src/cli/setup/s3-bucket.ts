import {
  CreateBucketCommand,
  GetBucketCorsCommand,
  GetBucketEncryptionCommand,
  GetBucketLifecycleConfigurationCommand,
  GetBucketLoggingCommand,
  GetBucketOwnershipControlsCommand,
  GetBucketPolicyCommand,
  GetPublicAccessBlockCommand,
  DeleteBucketPolicyCommand,
  HeadBucketCommand,
  PutBucketCorsCommand,
  PutBucketEncryptionCommand,
  PutBucketLifecycleConfigurationCommand,
  PutBucketLoggingCommand,
  PutBucketOwnershipControlsCommand,
  PutBucketPolicyCommand,
  PutPublicAccessBlockCommand,
  type BucketLocationConstraint,
  type LifecycleRule,
  type S3Client,
} from '@aws-sdk/client-s3';
import { canonical, sameSettings } from './compare.ts';
import {
  httpStatus,
  isAwsError,
  reconcile,
  SetupError,
  type ItemSink,
  type SetupItem,
} from './items.ts';
import type { CorsRuleJson, LifecycleRuleJson, PolicyJson } from './templates.ts';

/** Everything a bucket should end up with; undefined parts are left alone. */
export interface BucketSpec {
  readonly name: string;
  readonly region: string;
  readonly cors?: CorsRuleJson[];
  /** null removes any policy (local servers that cannot evaluate its conditions). */
  readonly policy: PolicyJson | null;
  readonly lifecycle: LifecycleRuleJson[];
  readonly logging?: { readonly targetBucket: string; readonly targetPrefix: string };
}

/** Returns undefined instead of throwing when S3 says the setting was never configured. */
async function orMissing<T>(read: () => Promise<T>, ...missing: string[]): Promise<T | undefined> {
  try {
    return await read();
  } catch (err) {
    if (isAwsError(err, ...missing)) return undefined;
    throw err;
  }
}

async function ensureBucketExists(
  s3: S3Client,
  spec: BucketSpec,
  sink: ItemSink,
): Promise<SetupItem> {
  let exists = true;
  try {
    const head = await s3.send(new HeadBucketCommand({ Bucket: spec.name }));
    if (head.BucketRegion && head.BucketRegion !== spec.region) {
      throw new SetupError(
        `Bucket ${spec.name} already exists in ${head.BucketRegion}: run again with --region ${head.BucketRegion}.`,
      );
    }
  } catch (err) {
    if (err instanceof SetupError) throw err;
    const status = httpStatus(err);
    if (status === 403) {
      throw new SetupError(
        `Bucket ${spec.name} exists but these credentials cannot use it (403): check --profile, or that the account owns it.`,
      );
    }
    if (status !== 404 && !isAwsError(err, 'NotFound', 'NoSuchBucket')) throw err;
    exists = false;
  }
  if (!exists) {
    // us-east-1 is the one region that refuses an explicit LocationConstraint.
    const config =
      spec.region === 'us-east-1'
        ? {}
        : {
            CreateBucketConfiguration: {
              LocationConstraint: spec.region as BucketLocationConstraint,
            },
          };
    await s3.send(new CreateBucketCommand({ Bucket: spec.name, ...config }));
  }
  const item: SetupItem = {
    resource: spec.name,
    setting: 'bucket',
    action: exists ? 'unchanged' : 'created',
    detail: spec.region,
  };
  sink(item);
  return item;
}

/** Lifecycle rules in one spelling: S3 may answer an empty filter as {} or {Prefix: ""}. */
function lifecycleShape(rules: readonly (LifecycleRule | LifecycleRuleJson)[]): unknown {
  return rules
    .map((r) => {
      const filter = r.Filter as Record<string, unknown> | undefined;
      const emptyFilter =
        !filter ||
        Object.keys(canonical(filter) as object).length === 0 ||
        sameSettings(filter, { Prefix: '' });
      return canonical({
        ID: r.ID,
        Status: r.Status,
        Filter: emptyFilter ? { Prefix: '' } : filter,
        AbortIncompleteMultipartUpload: r.AbortIncompleteMultipartUpload,
        Transitions: r.Transitions?.map((t) => ({ Days: t.Days, StorageClass: t.StorageClass })),
        Expiration: r.Expiration,
      });
    })
    .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
}

function describeLifecycle(rules: readonly LifecycleRuleJson[]): string {
  return rules
    .map((r) => {
      const parts: string[] = [];
      if (r.AbortIncompleteMultipartUpload)
        parts.push(
          `abort multipart after ${r.AbortIncompleteMultipartUpload.DaysAfterInitiation}d`,
        );
      for (const t of r.Transitions ?? []) parts.push(`${t.StorageClass} after ${t.Days}d`);
      if (r.Expiration) parts.push(`expire after ${r.Expiration.Days}d`);
      // a rule on part of the bucket says which part
      const scope = r.Filter.Prefix === '' ? '' : ` (${r.Filter.Prefix}*)`;
      return `${parts.join(', ')}${scope}`;
    })
    .join('; ');
}

/** Creates the bucket if needed, then brings each setting in line with the spec. */
export async function ensureBucket(
  s3: S3Client,
  spec: BucketSpec,
  sink: ItemSink,
): Promise<SetupItem[]> {
  const Bucket = spec.name;
  const items: SetupItem[] = [await ensureBucketExists(s3, spec, sink)];
  const common = { resource: Bucket, sink };

  items.push(
    await reconcile({
      ...common,
      setting: 'object ownership',
      detail: 'BucketOwnerEnforced (ACLs off)',
      read: () =>
        orMissing(
          () => s3.send(new GetBucketOwnershipControlsCommand({ Bucket })),
          'OwnershipControlsNotFoundError',
        ),
      matches: (c) =>
        c.OwnershipControls?.Rules?.length === 1 &&
        c.OwnershipControls.Rules[0]?.ObjectOwnership === 'BucketOwnerEnforced',
      write: () =>
        s3.send(
          new PutBucketOwnershipControlsCommand({
            Bucket,
            OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
          }),
        ),
    }),
  );

  const block = {
    BlockPublicAcls: true,
    IgnorePublicAcls: true,
    BlockPublicPolicy: true,
    RestrictPublicBuckets: true,
  };
  items.push(
    await reconcile({
      ...common,
      setting: 'public access block',
      detail: 'all four on',
      read: () =>
        orMissing(
          () => s3.send(new GetPublicAccessBlockCommand({ Bucket })),
          'NoSuchPublicAccessBlockConfiguration',
        ),
      matches: (c) => sameSettings(c.PublicAccessBlockConfiguration, block),
      write: () =>
        s3.send(new PutPublicAccessBlockCommand({ Bucket, PublicAccessBlockConfiguration: block })),
    }),
  );

  items.push(
    await reconcile({
      ...common,
      setting: 'encryption',
      detail: 'SSE-S3 (AES256)',
      read: () =>
        orMissing(
          () => s3.send(new GetBucketEncryptionCommand({ Bucket })),
          'ServerSideEncryptionConfigurationNotFoundError',
        ),
      matches: (c) => {
        const rules = c.ServerSideEncryptionConfiguration?.Rules ?? [];
        const d = rules[0]?.ApplyServerSideEncryptionByDefault;
        return rules.length === 1 && d?.SSEAlgorithm === 'AES256' && !d.KMSMasterKeyID;
      },
      write: () =>
        s3.send(
          new PutBucketEncryptionCommand({
            Bucket,
            ServerSideEncryptionConfiguration: {
              Rules: [{ ApplyServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
            },
          }),
        ),
    }),
  );

  if (spec.cors) {
    const CORSRules = spec.cors;
    items.push(
      await reconcile({
        ...common,
        setting: 'cors',
        detail: `${CORSRules.length === 1 ? '1 rule' : `${CORSRules.length} rules`} for ${[...new Set(CORSRules.flatMap((r) => r.AllowedOrigins))].join(' ')}`,
        read: () =>
          orMissing(() => s3.send(new GetBucketCorsCommand({ Bucket })), 'NoSuchCORSConfiguration'),
        matches: (c) => sameSettings(c.CORSRules, CORSRules),
        write: () =>
          s3.send(new PutBucketCorsCommand({ Bucket, CORSConfiguration: { CORSRules } })),
      }),
    );
  }

  const readPolicy = () =>
    orMissing(() => s3.send(new GetBucketPolicyCommand({ Bucket })), 'NoSuchBucketPolicy');
  const policy = spec.policy;
  if (policy) {
    items.push(
      await reconcile({
        ...common,
        setting: 'policy',
        detail: policy.Statement.map((s) => s.Sid ?? s.Effect).join(', '),
        read: readPolicy,
        matches: (c) => {
          try {
            return sameSettings(JSON.parse(c.Policy ?? 'null'), policy);
          } catch {
            return false;
          }
        },
        write: () =>
          s3.send(new PutBucketPolicyCommand({ Bucket, Policy: JSON.stringify(policy) })),
      }),
    );
  } else {
    const had = (await readPolicy())?.Policy !== undefined;
    if (had) await s3.send(new DeleteBucketPolicyCommand({ Bucket }));
    const item: SetupItem = {
      resource: Bucket,
      setting: 'policy',
      action: had ? 'updated' : 'unchanged',
      detail: 'none (--no-bucket-policy)',
    };
    sink(item);
    items.push(item);
  }

  items.push(
    await reconcile({
      ...common,
      setting: 'lifecycle',
      detail: describeLifecycle(spec.lifecycle),
      read: () =>
        orMissing(
          () => s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket })),
          'NoSuchLifecycleConfiguration',
        ),
      matches: (c) => sameSettings(lifecycleShape(c.Rules ?? []), lifecycleShape(spec.lifecycle)),
      write: () =>
        s3.send(
          new PutBucketLifecycleConfigurationCommand({
            Bucket,
            LifecycleConfiguration: { Rules: spec.lifecycle },
          }),
        ),
    }),
  );

  if (spec.logging) {
    const { targetBucket, targetPrefix } = spec.logging;
    items.push(
      await reconcile({
        ...common,
        setting: 'access logging',
        detail: `to s3://${targetBucket}/${targetPrefix}`,
        read: async () => (await s3.send(new GetBucketLoggingCommand({ Bucket }))).LoggingEnabled,
        matches: (c) => c.TargetBucket === targetBucket && c.TargetPrefix === targetPrefix,
        write: () =>
          s3.send(
            new PutBucketLoggingCommand({
              Bucket,
              BucketLoggingStatus: {
                LoggingEnabled: { TargetBucket: targetBucket, TargetPrefix: targetPrefix },
              },
            }),
          ),
      }),
    );
  }
  return items;
}
