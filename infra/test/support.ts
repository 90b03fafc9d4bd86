// Runs from the repo root (`npx vitest run infra/test`); aws-cdk-lib resolves from
// infra/node_modules, so it is imported lazily by the tests that need it.
import { existsSync, readFileSync } from 'node:fs';
import type { Stack } from 'aws-cdk-lib';
import type { Template } from 'aws-cdk-lib/assertions';
import type { EchoesStorageStack, EchoesStorageStackProps } from '../lib/echoes-storage-stack.ts';

export const CDK_INSTALLED = existsSync(
  new URL('../node_modules/aws-cdk-lib/package.json', import.meta.url),
);

export function warnIfCdkMissing(file: string): void {
  if (CDK_INSTALLED) return;
  const message =
    'infra/node_modules is missing: run `npm ci --prefix infra` to run the CDK tests.';
  if (process.env.CI === 'true') throw new Error(message);
  console.warn(`SKIPPED ${file}: ${message}`);
}

export type Json = Record<string, unknown>;

/** CloudFormation intrinsics as plain strings: GetAtt -> "Id.Attr", Ref -> "{Id}", Join concatenated. */
export function flat(value: unknown): string {
  if (typeof value === 'string') return value;
  const v = value as Json;
  if (Array.isArray(v['Fn::GetAtt'])) return (v['Fn::GetAtt'] as string[]).join('.');
  if (typeof v.Ref === 'string') return `{${v.Ref}}`;
  if (Array.isArray(v['Fn::Join'])) {
    const [sep, parts] = v['Fn::Join'] as [string, unknown[]];
    return parts.map(flat).join(sep);
  }
  throw new Error(`unexpected intrinsic ${JSON.stringify(value)}`);
}

/** Every intrinsic in a JSON value flattened, so whole documents compare as plain data. */
export function flatDeep(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(flatDeep);
  if (value !== null && typeof value === 'object') {
    const v = value as Json;
    if ('Ref' in v || 'Fn::GetAtt' in v || 'Fn::Join' in v) return flat(v);
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, flatDeep(x)]));
  }
  return value;
}

export const list = <T>(v: T | T[] | undefined): T[] =>
  v === undefined ? [] : Array.isArray(v) ? v : [v];

const REPO = new URL('../../', import.meta.url);

/**
 * The events and cleanup handlers are written on another branch; until they exist here, the
 * tests point those functions at the API's module. Bundling is skipped in tests, so the entry
 * only has to exist.
 */
export function testEntries(): EchoesStorageStackProps['entries'] {
  const existing = (path: string): string => {
    const file = new URL(path, REPO).pathname;
    return existsSync(file) ? file : new URL('src/entry/lambda-api.ts', REPO).pathname;
  };
  return {
    events: existing('src/entry/lambda-s3-events.ts'),
    cleanup: existing('src/entry/lambda-cleanup.ts'),
    exportWorker: existing('src/entry/lambda-export-worker.ts'),
  };
}

export interface Synth {
  stack: EchoesStorageStack;
  template: Template;
  json: {
    Resources: Record<string, { Type: string; Properties: Json; DeletionPolicy?: string }>;
    Outputs: Record<string, { Value: unknown }>;
    Parameters: Record<string, Json>;
  };
  id: (construct: { node: { defaultChild?: unknown } }) => string;
  resource: (logicalId: string) => Json;
  ofType: (type: string) => Array<[string, Json]>;
}

/** The identity provider every synth trusts unless a test names another (the stack requires one). */
export const TEST_AUTH = {
  authAudience: 'echoes-api',
  authIssuer: 'https://id.example.com/',
} as const;

export async function synth(
  given: Omit<EchoesStorageStackProps, 'entries' | 'authAudience' | 'authIssuer'> &
    Partial<Pick<EchoesStorageStackProps, 'authAudience' | 'authIssuer'>>,
): Promise<Synth> {
  const props: Omit<EchoesStorageStackProps, 'entries'> = { ...TEST_AUTH, ...given };
  const { App } = await import('aws-cdk-lib');
  const { Template: T } = await import('aws-cdk-lib/assertions');
  const { EchoesStorageStack: S } = await import('../lib/echoes-storage-stack.ts');
  // The feature flags of cdk.json change what synth emits, so tests use the same ones.
  const cdkJson = JSON.parse(readFileSync(new URL('../cdk.json', import.meta.url), 'utf8')) as {
    context: Json;
  };
  // no stack is bundled: no esbuild run, the assertions stay fast
  const app = new App({
    context: { ...cdkJson.context, environment: props.environment, 'aws:cdk:bundling-stacks': [] },
  });
  const stack = new S(app, `EchoesStorage-${props.environment}`, {
    ...props,
    entries: testEntries(),
  });
  const template = T.fromStack(stack);
  const json = template.toJSON() as Synth['json'];
  return {
    stack,
    template,
    json,
    id: (c) => (stack as Stack).getLogicalId(c.node.defaultChild as never),
    resource: (logicalId) => {
      const r = json.Resources[logicalId];
      if (!r) throw new Error(`no resource ${logicalId}`);
      return r.Properties;
    },
    ofType: (type) =>
      Object.entries(json.Resources)
        .filter(([, r]) => r.Type === type)
        .map(([k, r]) => [k, r.Properties]),
  };
}
