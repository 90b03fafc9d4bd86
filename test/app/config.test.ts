import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  devAuthHostProblem,
  environmentWithDotEnv,
  isLoopbackHost,
  loadConfig,
} from '../../src/app/config.ts';

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
}

describe('config', () => {
  it('defaults to the embedded deployment on 127.0.0.1:8000', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      port: 8000,
      host: '127.0.0.1',
      publicBaseUrl: 'http://127.0.0.1:8000',
      storageBackend: 'local',
      metadataBackend: 'sqlite',
      presignedUrlExpiration: 3600,
      maxAudioFileSize: 10485760,
      corsOrigins: ['http://localhost:3000', 'http://localhost:8000'],
    });
    expect(c.auth.dev).toBe(true);
    expect(c.s3.region).toBe('us-east-1');
  });

  it('picks the AWS backends when their names are set', () => {
    const c = loadConfig({
      S3_BUCKET_NAME: 'b',
      DYNAMODB_TABLE_NAME: 't',
      S3_FORCE_PATH_STYLE: 'true',
      S3_ENDPOINT: 'http://127.0.0.1:5000/',
    });
    expect(c.storageBackend).toBe('s3');
    expect(c.metadataBackend).toBe('dynamodb');
    expect(c.s3.forcePathStyle).toBe(true);
    expect(c.s3.endpoint).toBe('http://127.0.0.1:5000');
  });

  it('METADATA_BACKEND=postgres takes DATABASE_URL and DATABASE_POOL_SIZE; DATABASE_URL alone selects nothing', () => {
    const c = loadConfig({
      METADATA_BACKEND: 'postgres',
      DATABASE_URL: 'postgresql://echoes:pw@db.internal:5432/echoes?sslmode=require',
      DATABASE_POOL_SIZE: '25',
    });
    expect(c.metadataBackend).toBe('postgres');
    expect(c.postgres).toEqual({
      url: 'postgresql://echoes:pw@db.internal:5432/echoes?sslmode=require',
      poolSize: 25,
    });
    expect(loadConfig({ DATABASE_URL: 'postgres://h/db' }).metadataBackend).toBe('sqlite');
    expect(
      loadConfig({ METADATA_BACKEND: 'postgres', DATABASE_URL: 'postgres://h/db' }).postgres
        .poolSize,
    ).toBe(10);
  });

  it('refuses METADATA_BACKEND=postgres without a postgres:// DATABASE_URL, never repeating the URL', () => {
    expect(problems({ METADATA_BACKEND: 'postgres' }).join()).toMatch(/needs DATABASE_URL/);
    for (const url of [
      'mysql://root:s3cret@db/echoes',
      'https://s3cret@db/x',
      's3cret',
      'postgres:///db',
    ]) {
      const said = problems({ METADATA_BACKEND: 'postgres', DATABASE_URL: url }).join();
      expect(said, url).toMatch(/postgres:\/\/user:password@host:5432\/database/);
      expect(said, url).not.toContain('s3cret');
    }
    expect(
      problems({
        METADATA_BACKEND: 'postgres',
        DATABASE_URL: 'postgres://h/db',
        DATABASE_POOL_SIZE: '0',
      }).join(),
    ).toMatch(/DATABASE_POOL_SIZE/);
    expect(problems({ METADATA_BACKEND: 'mysql' }).join()).toMatch(/sqlite, dynamodb, postgres/);
  });

  it('names every bad variable and what it accepts', () => {
    const found = problems({
      PORT: 'eighty',
      S3_PRESIGNED_URL_EXPIRATION: '0',
      MAX_AUDIO_FILE_SIZE: '-1',
      STORAGE_BACKEND: 'ftp',
      S3_FORCE_PATH_STYLE: 'maybe',
      CORS_ORIGINS: 'not an origin',
      AUTH_JWKS_URL: 'ftp://x',
      S3_ENDPOINT: 'nope',
    });
    for (const name of [
      'PORT',
      'S3_PRESIGNED_URL_EXPIRATION',
      'MAX_AUDIO_FILE_SIZE',
      'STORAGE_BACKEND',
      'S3_FORCE_PATH_STYLE',
      'CORS_ORIGINS',
      'AUTH_JWKS_URL',
      'S3_ENDPOINT',
    ]) {
      expect(
        found.some((p) => p.includes(name)),
        name,
      ).toBe(true);
    }
  });

  it('REQUEST_IDLE_TIMEOUT_SECONDS: 30 by default, whole seconds from 1 to 3600', () => {
    expect(loadConfig({}).requestIdleTimeoutSeconds).toBe(30);
    expect(loadConfig({ REQUEST_IDLE_TIMEOUT_SECONDS: '2' }).requestIdleTimeoutSeconds).toBe(2);
    for (const bad of ['0', '-1', '1.5', 'soon', '3601']) {
      expect(problems({ REQUEST_IDLE_TIMEOUT_SECONDS: bad }).join(), bad).toContain(
        `REQUEST_IDLE_TIMEOUT_SECONDS="${bad}" must be a whole number from 1 to 3600`,
      );
    }
  });

  it('refuses dev auth in production and half-configured backends', () => {
    expect(problems({ NODE_ENV: 'production' }).join()).toMatch(/AUTH_JWKS_URL or AUTH_JWT_SECRET/);
    expect(problems({ NODE_ENV: 'production', AUTH_JWT_SECRET: 'x'.repeat(40) })).toEqual([]);
    expect(problems({ AUTH_JWT_SECRET: 'short' }).join()).toMatch(/AUTH_JWT_SECRET/);
    expect(problems({ STORAGE_BACKEND: 's3' }).join()).toMatch(/S3_BUCKET_NAME/);
    expect(problems({ METADATA_BACKEND: 'dynamodb' }).join()).toMatch(/DYNAMODB_TABLE_NAME/);
  });

  it('lets the functions that answer no requests run in production without AUTH_*', () => {
    const env = { NODE_ENV: 'production', S3_BUCKET_NAME: 'b', DYNAMODB_TABLE_NAME: 't' };
    expect(() => loadConfig(env)).toThrow(/AUTH_JWKS_URL or AUTH_JWT_SECRET/);
    expect(loadConfig(env, { authRequired: false }).auth.dev).toBe(true);
  });

  it('refuses AUTH_ISSUER or AUTH_AUDIENCE without a key, rather than falling back to dev tokens', () => {
    expect(() => loadConfig({ AUTH_ISSUER: 'https://id.example.com/' })).toThrow(
      /AUTH_ISSUER is set but neither AUTH_JWKS_URL nor AUTH_JWT_SECRET/,
    );
    expect(() => loadConfig({ AUTH_AUDIENCE: 'echoes-api', AUTH_JWKS_URL: '' })).toThrow(
      /AUTH_AUDIENCE is set but neither/,
    );
    expect(loadConfig({ AUTH_AUDIENCE: 'echoes-api' }, { authRequired: false }).auth.dev).toBe(
      true,
    );
    expect(
      loadConfig({ AUTH_AUDIENCE: 'echoes-api', AUTH_JWT_SECRET: 'x'.repeat(32) }).auth.dev,
    ).toBe(false);
  });

  it('production with AUTH_JWKS_URL needs https and AUTH_ISSUER and AUTH_AUDIENCE, naming each', () => {
    const prod = {
      NODE_ENV: 'production',
      AUTH_JWKS_URL: 'https://id.example.com/.well-known/jwks.json',
    };
    const full = { ...prod, AUTH_ISSUER: 'https://id.example.com/', AUTH_AUDIENCE: 'echoes-api' };
    expect(problems(full)).toEqual([]);
    expect(problems({ ...full, AUTH_JWKS_URL: 'http://id.example.com/jwks.json' }).join()).toMatch(
      /AUTH_JWKS_URL="http:\/\/id\.example\.com\/jwks\.json" must be an https:\/\/ URL/,
    );
    expect(problems({ ...full, AUTH_JWKS_URL: 'HTTP://id.example.com/jwks.json' }).join()).toMatch(
      /must be an https:\/\/ URL/,
    );
    expect(problems({ ...full, AUTH_JWKS_URL: 'HTTPS://id.example.com/jwks.json' })).toEqual([]);
    expect(problems(prod).join()).toMatch(/needs AUTH_ISSUER and AUTH_AUDIENCE/);
    expect(problems({ ...prod, AUTH_ISSUER: 'https://id.example.com/' }).join()).toMatch(
      /needs AUTH_AUDIENCE:/,
    );
    expect(problems({ ...prod, AUTH_AUDIENCE: 'echoes-api', AUTH_ISSUER: '  ' }).join()).toMatch(
      /needs AUTH_ISSUER:/,
    );
    // Outside production (a local identity provider) http and a missing audience are allowed.
    expect(problems({ AUTH_JWKS_URL: 'http://127.0.0.1:9/jwks.json' })).toEqual([]);
    // The functions that answer no requests never check a token.
    expect(
      loadConfig({ ...prod, AUTH_JWKS_URL: 'http://x/jwks.json' }, { authRequired: false }).auth
        .jwksUrl,
    ).toBe('http://x/jwks.json');
  });

  it('AUTH_JWT_SECRET needs 32 characters everywhere', () => {
    expect(problems({ AUTH_JWT_SECRET: 'x'.repeat(31) }).join()).toMatch(
      /AUTH_JWT_SECRET must be at least 32 characters/,
    );
    expect(problems({ NODE_ENV: 'production', AUTH_JWT_SECRET: 'x'.repeat(31) }).join()).toMatch(
      /AUTH_JWT_SECRET must be at least 32 characters/,
    );
    expect(problems({ AUTH_JWT_SECRET: 'x'.repeat(32) })).toEqual([]);
  });

  it('loopback addresses: 127.0.0.0/8, ::1 and localhost, nothing that only looks like them', () => {
    for (const host of [
      '127.0.0.1',
      '127.1.2.3',
      '127.255.255.255',
      '::1',
      '0:0:0:0:0:0:0:1',
      '::0:1',
      'localhost',
      'LOCALHOST',
    ]) {
      expect(isLoopbackHost(host), host).toBe(true);
    }
    for (const host of [
      '0.0.0.0',
      '::',
      '',
      '127.0.0.1.evil',
      '127.evil',
      '[::1]',
      '::ffff:127.0.0.1',
      'localhost.',
      'localhost.evil',
      'evil.localhost',
      '127.1',
      '127.000.0.1',
      '0177.0.0.1',
      '128.0.0.1',
      '10.0.0.1',
      '::2',
      '::1%lo',
      'fe80::1',
      ' 127.0.0.1',
      '127.0.0.1/8',
    ]) {
      expect(isLoopbackHost(host), host).toBe(false);
    }
  });

  it('dev auth only on a loopback HOST: anything else names HOST and what to set', () => {
    for (const host of [
      '0.0.0.0',
      '::',
      '127.0.0.1.evil',
      '[::1]',
      '::ffff:127.0.0.1',
      'localhost.',
      '192.168.1.10',
    ]) {
      const problem = devAuthHostProblem(loadConfig({ HOST: host }));
      expect(problem, host).toContain(`HOST=${host} is not a loopback address`);
      expect(problem, host).toMatch(/Set AUTH_JWKS_URL or AUTH_JWT_SECRET/);
    }
    // An empty HOST is the default, 127.0.0.1.
    expect(loadConfig({ HOST: '' }).host).toBe('127.0.0.1');
    expect(loadConfig({ HOST: '  ' }).host).toBe('127.0.0.1');
    for (const host of ['', '127.0.0.1', '::1', 'localhost'])
      expect(devAuthHostProblem(loadConfig({ HOST: host })), host).toBeUndefined();
    expect(
      devAuthHostProblem(loadConfig({ HOST: '0.0.0.0', AUTH_JWT_SECRET: 'x'.repeat(32) })),
    ).toBeUndefined();
    expect(
      devAuthHostProblem(loadConfig({ HOST: '::', AUTH_JWKS_URL: 'http://127.0.0.1:9/jwks.json' })),
    ).toBeUndefined();
  });

  it('on Lambda: EMF on and Prometheus off by default, both as set otherwise', () => {
    expect(loadConfig({}).metrics).toMatchObject({ prometheus: true, emf: false });
    expect(loadConfig({ AWS_LAMBDA_FUNCTION_NAME: 'api' }).metrics).toMatchObject({
      prometheus: false,
      emf: true,
    });
    expect(
      loadConfig({ AWS_LAMBDA_FUNCTION_NAME: 'api', METRICS: 'on', METRICS_EMF: 'off' }).metrics,
    ).toMatchObject({ prometheus: true, emf: false });
  });

  it('reads .env under the real environment', () => {
    const dir = mkdtempSync(join(tmpdir(), 'echoes-env-'));
    writeFileSync(join(dir, '.env'), 'PORT=9001\nMAX_AUDIO_FILE_SIZE=123\n');
    const env = environmentWithDotEnv({ PORT: '9002' }, dir);
    expect(loadConfig(env)).toMatchObject({ port: 9002, maxAudioFileSize: 123 });
  });
});
