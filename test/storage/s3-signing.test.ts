import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import aws4 from 'aws4';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cachedProvider } from '../../src/support/aws/credentials.ts';
import { isPortError } from '../../src/domain/errors.ts';
import { DynamoEchoRepository } from '../../src/metadata/dynamodb/repository.ts';
import { S3ObjectStore, type S3ObjectStoreOptions } from '../../src/storage/s3/store.ts';
import type { UploadSpec } from '../../src/storage/port.ts';
import { createEchoTable, startDynalite, type LocalServer } from '../backends/dynalite.ts';

const CREDS = {
  accessKeyId: 'AKIDSIGNINGTEST',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
};
const SIGNING_DATE = new Date('2025-03-04T05:06:07Z');
const CHECKSUM = 'n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=';
const KEY = 'user@example.com|x/2025/03/04/01956363-7e38-7a2b-9c3d-0123456789ab.webm';

/** Where the store may run: a local S3 server (path style) and AWS itself (virtual host). */
const TARGETS: { name: string; options: Omit<S3ObjectStoreOptions, 'credentials'> }[] = [
  {
    name: 'path style on a custom endpoint',
    options: {
      bucket: 'echoes-audio',
      region: 'us-east-1',
      endpoint: 'http://127.0.0.1:9000',
      forcePathStyle: true,
    },
  },
  {
    name: 'AWS virtual-hosted',
    options: { bucket: 'echoes-audio', region: 'eu-west-1', forcePathStyle: false },
  },
];

function store(options: Omit<S3ObjectStoreOptions, 'credentials'>): S3ObjectStore {
  return new S3ObjectStore({ ...options, credentials: CREDS, clock: () => SIGNING_DATE });
}

const upload = (extra: Partial<UploadSpec> = {}): UploadSpec => ({
  key: KEY,
  contentType: 'audio/webm;codecs=opus',
  expiresInSeconds: 900,
  maxBytes: 10_485_760,
  ...extra,
});

const signedHeaders = (url: string): string[] =>
  new URL(url).searchParams.get('X-Amz-SignedHeaders')?.split(';') ?? [];

/**
 * Re-signs the request a client would send (URL + headers) with aws4, an implementation
 * that shares no code with the SDK, and returns aws4's signature and signed-header list.
 */
function aws4Signature(
  url: string,
  method: string,
  headers: Record<string, string>,
  region: string,
): { signature: string; signedHeaders: string } {
  const u = new URL(url);
  const query = new URLSearchParams(u.search);
  query.delete('X-Amz-Signature');
  const request = aws4.sign(
    {
      host: u.host,
      method,
      path: `${u.pathname}?${query.toString()}`,
      service: 's3',
      region,
      signQuery: true,
      headers: { Host: u.host, ...headers },
    },
    CREDS,
  );
  const signed = new URL(`http://x${request.path ?? ''}`).searchParams;
  return {
    signature: signed.get('X-Amz-Signature') ?? '',
    signedHeaders: signed.get('X-Amz-SignedHeaders') ?? '',
  };
}

describe.each(TARGETS)('S3 presigned URLs ($name)', ({ options }) => {
  const s3 = store(options);
  afterAll(() => s3.close());

  it('PUT binds content-type, host, if-none-match and SSE; length and checksum only when given', async () => {
    expect(signedHeaders((await s3.signUpload(upload())).url)).toEqual([
      'content-type',
      'host',
      'if-none-match',
      'x-amz-server-side-encryption',
    ]);
    expect(signedHeaders((await s3.signUpload(upload({ contentLength: 4242 }))).url)).toEqual([
      'content-length',
      'content-type',
      'host',
      'if-none-match',
      'x-amz-server-side-encryption',
    ]);
    expect(signedHeaders((await s3.signUpload(upload({ checksumSha256: CHECKSUM }))).url)).toEqual([
      'content-type',
      'host',
      'if-none-match',
      'x-amz-checksum-sha256',
      'x-amz-server-side-encryption',
    ]);
    const full = await s3.signUpload(upload({ contentLength: 4242, checksumSha256: CHECKSUM }));
    expect(signedHeaders(full.url)).toEqual([
      'content-length',
      'content-type',
      'host',
      'if-none-match',
      'x-amz-checksum-sha256',
      'x-amz-server-side-encryption',
    ]);
    // Hoisted into the query these would be values S3 takes from the URL, not checks on the request.
    const params = [...new URL(full.url).searchParams.keys()].map((k) => k.toLowerCase());
    for (const h of [
      'x-amz-server-side-encryption',
      'x-amz-checksum-sha256',
      'content-type',
      'if-none-match',
      'content-length',
      'x-amz-sdk-checksum-algorithm',
      'x-amz-checksum-crc32',
    ]) {
      expect(params).not.toContain(h);
    }
    expect(full.headers).toEqual({
      'Content-Type': 'audio/webm;codecs=opus',
      'x-amz-server-side-encryption': 'AES256',
      'x-amz-checksum-sha256': CHECKSUM,
      'If-None-Match': '*',
    });
    const q = new URL(full.url).searchParams;
    expect(q.get('X-Amz-Expires')).toBe('900');
    expect(q.get('X-Amz-Date')).toBe('20250304T050607Z');
    expect(q.get('X-Amz-Credential')).toBe(
      `${CREDS.accessKeyId}/20250304/${options.region}/s3/aws4_request`,
    );
  });

  it('GET binds only host; response-content-type is part of the signed query', async () => {
    const url = await s3.signDownload(KEY, { expiresInSeconds: 600, contentType: 'audio/webm' });
    expect(signedHeaders(url)).toEqual(['host']);
    expect(new URL(url).searchParams.get('response-content-type')).toBe('audio/webm');
    expect(new URL(url).searchParams.has('response-content-type')).toBe(true);
    expect(
      new URL(await s3.signDownload(KEY, { expiresInSeconds: 600 })).searchParams.has(
        'response-content-type',
      ),
    ).toBe(false);
  });

  it('an independent SigV4 (aws4) re-signing exactly the client request gets the same signature', async () => {
    for (const spec of [
      upload(),
      upload({ contentLength: 4242 }),
      upload({ checksumSha256: CHECKSUM, contentLength: 1 }),
    ]) {
      const signed = await s3.signUpload(spec);
      const sent: Record<string, string> = { ...signed.headers };
      if (spec.contentLength !== undefined) sent['Content-Length'] = String(spec.contentLength);
      const ours = new URL(signed.url).searchParams;
      const theirs = aws4Signature(signed.url, 'PUT', sent, options.region);
      expect(theirs.signedHeaders).toBe(ours.get('X-Amz-SignedHeaders'));
      expect(theirs.signature).toBe(ours.get('X-Amz-Signature'));
    }
    const get = await s3.signDownload(KEY, { expiresInSeconds: 600, contentType: 'audio/webm' });
    expect(aws4Signature(get, 'GET', {}, options.region).signature).toBe(
      new URL(get).searchParams.get('X-Amz-Signature'),
    );
  });

  it('changing any bound header, the key or the response type breaks the signature', async () => {
    const spec = upload({ contentLength: 4242, checksumSha256: CHECKSUM });
    const signed = await s3.signUpload(spec);
    const ours = new URL(signed.url).searchParams.get('X-Amz-Signature');
    const sent: Record<string, string> = { ...signed.headers, 'Content-Length': '4242' };
    const tampered: Record<string, string>[] = [
      { ...sent, 'Content-Type': 'audio/ogg' },
      { ...sent, 'Content-Type': 'audio/webm' },
      { ...sent, 'Content-Length': '4243' },
      { ...sent, 'x-amz-checksum-sha256': CHECKSUM.replace('n', 'm') },
      { ...sent, 'x-amz-server-side-encryption': 'aws:kms' },
      { ...sent, 'If-None-Match': '"etag"' },
    ];
    for (const headers of tampered)
      expect(aws4Signature(signed.url, 'PUT', headers, options.region).signature).not.toBe(ours);
    const { 'If-None-Match': _a, ...withoutCondition } = sent;
    expect(aws4Signature(signed.url, 'PUT', withoutCondition, options.region).signature).not.toBe(
      ours,
    );
    expect(
      aws4Signature(signed.url.replace('.webm', '.wav'), 'PUT', sent, options.region).signature,
    ).not.toBe(ours);
    const get = await s3.signDownload(KEY, { expiresInSeconds: 600, contentType: 'audio/webm' });
    expect(
      aws4Signature(get.replace('audio%2Fwebm', 'text%2Fhtml'), 'GET', {}, options.region)
        .signature,
    ).not.toBe(new URL(get).searchParams.get('X-Amz-Signature'));
  });

  it('equals getSignedUrl for the same request and time: same URL, same signed headers, same signature', async () => {
    const client = new S3Client({
      region: options.region,
      endpoint: options.endpoint,
      forcePathStyle: options.forcePathStyle,
      credentials: CREDS,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    try {
      for (const spec of [upload(), upload({ contentLength: 4242, checksumSha256: CHECKSUM })]) {
        const ours = (await s3.signUpload(spec)).url;
        const sdk = await getSignedUrl(
          client,
          new PutObjectCommand({
            Bucket: options.bucket,
            Key: KEY,
            ContentType: spec.contentType,
            ServerSideEncryption: 'AES256',
            ContentLength: spec.contentLength,
            ChecksumSHA256: spec.checksumSha256,
            IfNoneMatch: '*',
          }),
          // getSignedUrl leaves content-type unsigned and hoists the checksum unless told otherwise.
          {
            expiresIn: 900,
            signingDate: SIGNING_DATE,
            signableHeaders: new Set(['content-type']),
            unhoistableHeaders: new Set(['x-amz-checksum-sha256']),
          },
        );
        expect(signedHeaders(ours)).toEqual(signedHeaders(sdk));
        expect(new URL(ours).searchParams.get('X-Amz-Signature')).toBe(
          new URL(sdk).searchParams.get('X-Amz-Signature'),
        );
        expect(ours).toBe(sdk);
      }
      const ours = await s3.signDownload(KEY, { expiresInSeconds: 600, contentType: 'audio/webm' });
      const sdk = await getSignedUrl(
        client,
        new GetObjectCommand({
          Bucket: options.bucket,
          Key: KEY,
          ResponseContentType: 'audio/webm',
        }),
        { expiresIn: 600, signingDate: SIGNING_DATE },
      );
      expect(ours).toBe(sdk);
    } finally {
      client.destroy();
    }
  });
});

describe('credentials', () => {
  it('are cached and refreshed only near expiry, one refresh at a time', async () => {
    let now = Date.UTC(2025, 0, 1);
    let calls = 0;
    const provider = cachedProvider(
      async () => {
        calls++;
        await new Promise((r) => setTimeout(r, 5));
        return {
          accessKeyId: `AKID${calls}`,
          secretAccessKey: 's',
          expiration: new Date(now + 15 * 60_000),
        };
      },
      () => now,
    );
    const [a, b] = await Promise.all([provider(), provider()]);
    expect(a.accessKeyId).toBe('AKID1');
    expect(b.accessKeyId).toBe('AKID1');
    now += 9 * 60_000;
    expect((await provider()).accessKeyId).toBe('AKID1');
    now += 2 * 60_000;
    expect((await provider()).accessKeyId).toBe('AKID2');
    expect(calls).toBe(2);
  });

  describe('a profile from a shared credentials file (AWS_PROFILE)', () => {
    let dir: string;
    let dynalite: LocalServer;
    const saved = {
      creds: process.env.AWS_SHARED_CREDENTIALS_FILE,
      config: process.env.AWS_CONFIG_FILE,
    };
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'echoes-profile-'));
      await writeFile(
        join(dir, 'credentials'),
        '[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = d\n\n[echoes-test]\naws_access_key_id = AKIDFROMPROFILE\naws_secret_access_key = secret-from-profile\n',
      );
      await writeFile(join(dir, 'config'), '[profile echoes-test]\nregion = eu-west-1\n');
      process.env.AWS_SHARED_CREDENTIALS_FILE = join(dir, 'credentials');
      process.env.AWS_CONFIG_FILE = join(dir, 'config');
      dynalite = await startDynalite();
      await createEchoTable(dynalite.endpoint, 'profile-echoes');
    });
    afterAll(async () => {
      for (const [name, value] of [
        ['AWS_SHARED_CREDENTIALS_FILE', saved.creds],
        ['AWS_CONFIG_FILE', saved.config],
      ] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
      await dynalite?.stop();
      await rm(dir, { recursive: true, force: true });
    });

    it("signs S3 URLs with the profile's access key", async () => {
      const s3 = new S3ObjectStore({
        bucket: 'echoes-audio',
        region: 'us-east-1',
        endpoint: 'http://127.0.0.1:9000',
        forcePathStyle: true,
        profile: 'echoes-test',
      });
      const url = (await s3.signUpload(upload())).url;
      expect(new URL(url).searchParams.get('X-Amz-Credential')).toMatch(/^AKIDFROMPROFILE\//);
      await s3.close();
    });

    it("talks to DynamoDB with the profile's credentials", async () => {
      const seen: string[] = [];
      const listener = (req: IncomingMessage): void => {
        seen.push(req.headers.authorization ?? '');
      };
      dynalite.http.on('request', listener);
      const repo = new DynamoEchoRepository({
        table: 'profile-echoes',
        region: 'us-east-1',
        endpoint: dynalite.endpoint,
        profile: 'echoes-test',
      });
      try {
        await repo.check();
        expect(
          await repo.get({ userId: 'u', echoId: '01956363-7e38-7a2b-9c3d-0123456789ab' }),
        ).toBeUndefined();
      } finally {
        dynalite.http.off('request', listener);
        await repo.close();
      }
      expect(seen.length).toBeGreaterThanOrEqual(2);
      for (const auth of seen) expect(auth).toMatch(/Credential=AKIDFROMPROFILE\//);
    });

    it('an unknown profile is an error (an outage the operator must end), not a silent fallback to other credentials', async () => {
      const repo = new DynamoEchoRepository({
        table: 'profile-echoes',
        region: 'us-east-1',
        endpoint: dynalite.endpoint,
        profile: 'nobody',
        maxAttempts: 1,
      });
      const get = repo.get({ userId: 'u', echoId: 'x' });
      await expect(get).rejects.toThrow(/nobody|profile|credentials/i);
      await get.catch((err: unknown) =>
        expect(isPortError(err, 'unavailable'), String(err)).toBe(true),
      );
      await expect(repo.check()).rejects.toThrow(
        /"profile-echoes".*No usable AWS credentials.*profile "nobody" \(AWS_PROFILE\)/,
      );
      await repo.close();
      const s3 = new S3ObjectStore({
        bucket: 'echoes-audio',
        region: 'us-east-1',
        endpoint: dynalite.endpoint,
        forcePathStyle: true,
        profile: 'nobody',
      });
      await expect(s3.check()).rejects.toThrow(
        /"echoes-audio".*No usable AWS credentials.*profile "nobody"/,
      );
      // Signing reads the credentials too, without a request: the same outage.
      const signing = await s3.signUpload(upload()).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(isPortError(signing, 'unavailable'), String(signing)).toBe(true);
      await s3.close();
    });
  });
});
