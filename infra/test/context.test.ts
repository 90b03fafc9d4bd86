import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { propsFromContext } from '../lib/context.ts';

const keys = generateKeyPairSync('rsa', { modulusLength: 2048 });
const PUBLIC = keys.publicKey.export({ type: 'spki', format: 'pem' }).toString();
const PRIVATE = keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const AUTH = { authAudience: 'echoes-api', authIssuer: 'https://id.example.com/' };
/** Context as `cdk synth -c` gives it; the auth keys are always there unless a test takes them out. */
const ctx =
  (values: Record<string, unknown>) =>
  (key: string): unknown =>
    ({ ...AUTH, ...values })[key];

describe('propsFromContext (-c values of the CDK app)', () => {
  it('defaults to dev with no layer, no e-mail, no CDN', () => {
    expect(propsFromContext(ctx({}))).toEqual({ environment: 'dev', ...AUTH });
  });

  it('passes every option through, CLI strings included', () => {
    const layer = 'arn:aws:lambda:eu-west-1:123456789012:layer:ffmpeg:7';
    expect(
      propsFromContext(
        ctx({
          environment: 'prod',
          ffmpegLayerArn: layer,
          alarmEmail: 'ops@example.com',
          authAudience: 'api',
          authIssuer: 'https://id.example.com/',
          rejectedUploadsPer5Min: '20',
          cdn: 'true',
          cdnPublicKey: PUBLIC,
          cdnPrivateKeySecret: 'my/secret',
        }),
      ),
    ).toEqual({
      environment: 'prod',
      ffmpegLayerArn: layer,
      alarmEmail: 'ops@example.com',
      authAudience: 'api',
      authIssuer: 'https://id.example.com/',
      rejectedUploadsPer5Min: 20,
      cdn: { publicKeyPem: PUBLIC.trim(), privateKeySecretName: 'my/secret' },
    });
  });

  it('cdn=true reads the public key from a file and names the secret after the environment by default', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'cdk-ctx-')), 'cdn.pub.pem');
    writeFileSync(file, PUBLIC);
    expect(
      propsFromContext(ctx({ environment: 'prod', cdn: true, cdnPublicKey: file })).cdn,
    ).toEqual({
      publicKeyPem: PUBLIC.trim(),
      privateKeySecretName: 'echoes-storage/prod/cdn-private-key',
    });
    expect(propsFromContext(ctx({ cdn: 'false', cdnPublicKey: file })).cdn).toBeUndefined();
  });

  it('cdn=true without a public key says which key to pass and how to make one', () => {
    expect(() => propsFromContext(ctx({ cdn: 'true' }))).toThrow(
      /-c cdnPublicKey=.*openssl genrsa -out cdn\.pem 2048 && openssl rsa -pubout -in cdn\.pem -out cdn\.pub\.pem/,
    );
    expect(() =>
      propsFromContext(ctx({ cdn: 'true', cdnPublicKey: '/nonexistent/cdn.pub.pem' })),
    ).toThrow(/-c cdnPublicKey=\/nonexistent\/cdn\.pub\.pem: no such file/);
  });

  it('refuses a private key where the public one belongs, so it never lands in the template', () => {
    expect(() => propsFromContext(ctx({ cdn: 'true', cdnPublicKey: PRIVATE }))).toThrow(
      /-c cdnPublicKey: expected a PEM public key.*never the private key/,
    );
  });

  it("requires the issuer and audience of the API's tokens, naming the missing keys", () => {
    expect(() => propsFromContext(ctx({ authIssuer: undefined, authAudience: undefined }))).toThrow(
      /^-c authIssuer=ISSUER and -c authAudience=AUDIENCE are required: the keys at AuthJwksUrl sign tokens for every app/,
    );
    expect(() => propsFromContext(ctx({ authIssuer: '' }))).toThrow(
      /^-c authIssuer=ISSUER is required/,
    );
    expect(() => propsFromContext(ctx({ authAudience: undefined }))).toThrow(
      /^-c authAudience=AUDIENCE is required/,
    );
  });

  it('stage throttling: none given keeps the stack defaults; one given fills the rest from them', () => {
    expect(propsFromContext(ctx({})).apiThrottle).toBeUndefined();
    expect(propsFromContext(ctx({ apiThrottleRate: '50' })).apiThrottle).toEqual({
      rate: 50,
      burst: 200,
      exportRate: 1,
      exportBurst: 5,
    });
    expect(
      propsFromContext(
        ctx({
          apiThrottleRate: 30,
          apiThrottleBurst: '60',
          exportThrottleRate: '0.5',
          exportThrottleBurst: 2,
        }),
      ).apiThrottle,
    ).toEqual({ rate: 30, burst: 60, exportRate: 0.5, exportBurst: 2 });
  });

  it('bad throttling values name the key, what it takes and its default', () => {
    for (const [key, value, expected] of [
      [
        'apiThrottleRate',
        '0',
        /^-c apiThrottleRate=0: expected requests per second > 0 .*\(default 100\)/,
      ],
      ['apiThrottleRate', 'fast', /^-c apiThrottleRate=fast: expected requests per second/],
      ['apiThrottleRate', '', /^-c apiThrottleRate=: expected/],
      ['apiThrottleRate', '-5', /^-c apiThrottleRate=-5/],
      ['apiThrottleRate', 'Infinity', /^-c apiThrottleRate=Infinity/],
      [
        'apiThrottleBurst',
        '2.5',
        /^-c apiThrottleBurst=2\.5: expected a whole number of requests >= 1 \(default 200\)/,
      ],
      ['exportThrottleBurst', '0', /^-c exportThrottleBurst=0: expected a whole number/],
      ['exportThrottleRate', true, /^-c exportThrottleRate=true: expected requests per second/],
      ['exportThrottleRate', '1e9', /^-c exportThrottleRate=1e9/],
    ] as const) {
      expect(() => propsFromContext(ctx({ [key]: value })), `${key}=${String(value)}`).toThrow(
        expected,
      );
    }
  });

  it('refuses export routes throttled more loosely than the API (a route setting replaces the stage one)', () => {
    expect(() => propsFromContext(ctx({ apiThrottleRate: '0.5' }))).toThrow(
      /^-c exportThrottleRate=1 is above apiThrottleRate=0\.5: the export routes must be throttled at least as tightly/,
    );
    expect(() =>
      propsFromContext(ctx({ apiThrottleBurst: '10', exportThrottleBurst: '20' })),
    ).toThrow(/^-c exportThrottleBurst=20 is above apiThrottleBurst=10/);
  });

  it('bad values name the context key', () => {
    expect(() => propsFromContext(ctx({ environment: 'staging' }))).toThrow(
      '-c environment=staging: use one of dev, prod.',
    );
    expect(() => propsFromContext(ctx({ ffmpegLayerArn: 'ffmpeg' }))).toThrow(
      /^-c ffmpegLayerArn=ffmpeg: expected a layer version ARN/,
    );
    expect(() => propsFromContext(ctx({ alarmEmail: 'ops' }))).toThrow(/^-c alarmEmail=ops/);
    expect(() => propsFromContext(ctx({ rejectedUploadsPer5Min: '0' }))).toThrow(
      /^-c rejectedUploadsPer5Min=0/,
    );
    expect(() => propsFromContext(ctx({ cdn: 'yes' }))).toThrow(/^-c cdn=yes: use true or false/);
  });
});
