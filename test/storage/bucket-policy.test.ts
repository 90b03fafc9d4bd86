import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type Server,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeToneWav } from '../../src/cli/integration/wav.ts';
import type { MultipartTicket, PartUrls } from '../../src/wire/echoes-api.ts';
import { apiClient, fixture, putBytes, type Ticket } from '../support/api.ts';
import { requireMoto, startAwsBackend, type MotoServer } from '../backends/s3-moto.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/*
 * moto applies a bucket policy's Deny statements without their conditions, so no upload test can
 * tell a policy that real S3 accepts uploads under from one that refuses them. This suite records
 * every request the service and its clients make to S3 during real uploads, and evaluates
 * config/s3-bucket-policy.json against each as AWS documents it: UploadPart and
 * CompleteMultipartUpload are authorized as s3:PutObject and carry no SSE header (the encryption
 * is named once, on CreateMultipartUpload), and a negated operator such as StringNotEquals is true
 * when the key is absent from the request.
 */

type Json = Record<string, unknown>;
type Context = Readonly<Record<string, string | undefined>>;

interface RequestFacts {
  readonly operation: string;
  readonly action: string;
  readonly resource: string;
  readonly context: Context;
}

const BUCKET = 'echoes-policy';
const PARTITION = 'aws';

function policy(): { Statement: Json[] } {
  const text = readFileSync(new URL('../../config/s3-bucket-policy.json', import.meta.url), 'utf8');
  return JSON.parse(
    text.replaceAll('${BUCKET_NAME}', BUCKET).replaceAll('${AWS_PARTITION}', PARTITION),
  ) as { Statement: Json[] };
}

const list = (v: unknown): string[] => (Array.isArray(v) ? (v as string[]) : [v as string]);
const wildcard = (pattern: string, value: string): boolean =>
  new RegExp(
    `^${pattern
      .split('*')
      .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
  ).test(value);

/** One condition operator over its keys, as the IAM reference says (keys ANDed, values ORed, NOR when negated). */
function operatorHolds(operator: string, keys: Json, context: Context): boolean {
  return Object.entries(keys).every(([key, expected]) => {
    const values = list(expected);
    const actual = context[key];
    switch (operator) {
      case 'Null':
        return values.some((v) => (v === 'true') === (actual === undefined));
      case 'Bool':
        return actual !== undefined && values.includes(actual);
      case 'StringEquals':
        return actual !== undefined && values.includes(actual);
      // A negated operator holds when the key is absent.
      case 'StringNotEquals':
        return actual === undefined || !values.includes(actual);
      default:
        throw new Error(
          `the test's evaluator does not know the operator ${operator}: teach it before using it in the policy`,
        );
    }
  });
}

/** The Sids of the Deny statements that match the request. */
function denials(facts: RequestFacts, statements = policy().Statement): string[] {
  return statements
    .filter((st) => {
      if (st.Effect !== 'Deny') return false;
      if (!list(st.Action).some((a) => wildcard(a, facts.action))) return false;
      if (!list(st.Resource).some((r) => wildcard(r, facts.resource))) return false;
      const condition = (st.Condition ?? {}) as Record<string, Json>;
      return Object.entries(condition).every(([op, keys]) =>
        operatorHolds(op, keys, facts.context),
      );
    })
    .map((st) => String(st.Sid));
}

/** The S3 operation a request is, and the action S3 authorizes it as. */
function classify(method: string, url: URL, headers: IncomingHttpHeaders): RequestFacts {
  const [, bucket = '', ...rest] = decodeURIComponent(url.pathname).split('/');
  const key = rest.join('/');
  const q = url.searchParams;
  const header = (name: string): string | undefined => {
    const h = headers[name];
    return (Array.isArray(h) ? h[0] : h) ?? q.get(name) ?? undefined;
  };
  let operation = `${method} ${key ? 'object' : 'bucket'}`;
  let action = 's3:Other';
  if (key) {
    if (method === 'PUT' && q.has('partNumber'))
      [operation, action] = ['UploadPart', 's3:PutObject'];
    else if (method === 'PUT' && header('x-amz-copy-source'))
      [operation, action] = ['CopyObject', 's3:PutObject'];
    else if (method === 'PUT') [operation, action] = ['PutObject', 's3:PutObject'];
    else if (method === 'POST' && q.has('uploads'))
      [operation, action] = ['CreateMultipartUpload', 's3:PutObject'];
    else if (method === 'POST' && q.has('uploadId'))
      [operation, action] = ['CompleteMultipartUpload', 's3:PutObject'];
    else if (method === 'GET' && q.has('uploadId'))
      [operation, action] = ['ListParts', 's3:ListMultipartUploadParts'];
    else if (method === 'GET' || method === 'HEAD')
      [operation, action] = ['GetObject', 's3:GetObject'];
    else if (method === 'DELETE' && q.has('uploadId'))
      [operation, action] = ['AbortMultipartUpload', 's3:AbortMultipartUpload'];
    else if (method === 'DELETE') [operation, action] = ['DeleteObject', 's3:DeleteObject'];
  } else if (method === 'POST' && q.has('delete')) {
    [operation, action] = ['DeleteObjects', 's3:DeleteObject'];
  } else if (method === 'GET') {
    [operation, action] = [
      q.has('uploads') ? 'ListMultipartUploads' : 'ListObjects',
      q.has('uploads') ? 's3:ListBucketMultipartUploads' : 's3:ListBucket',
    ];
  }
  const resource = key
    ? `arn:${PARTITION}:s3:::${bucket}/${key}`
    : `arn:${PARTITION}:s3:::${bucket}`;
  // Production endpoints are https; the plain-HTTP case is checked on its own below.
  return {
    operation,
    action,
    resource,
    context: {
      'aws:SecureTransport': 'true',
      's3:x-amz-server-side-encryption': header('x-amz-server-side-encryption'),
    },
  };
}

/** A pass-through proxy in front of moto that keeps what every request was. */
async function startRecordingProxy(
  target: string,
): Promise<{ endpoint: string; seen: RequestFacts[]; close(): Promise<void> }> {
  const seen: RequestFacts[] = [];
  const upstream = new URL(target);
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    seen.push(classify(req.method ?? 'GET', url, req.headers));
    const out = httpRequest(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    out.on('error', () => res.destroy());
    req.pipe(out);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

describe('config/s3-bucket-policy.json, as S3 evaluates it', () => {
  it('denies a PutObject that asks for another encryption, and any request over plain HTTP', () => {
    const put = (sse: string | undefined, secure = 'true'): RequestFacts => ({
      operation: 'PutObject',
      action: 's3:PutObject',
      resource: `arn:aws:s3:::${BUCKET}/alice/2026/01/01/x.wav`,
      context: { 'aws:SecureTransport': secure, 's3:x-amz-server-side-encryption': sse },
    });
    expect(denials(put('aws:kms'))).toEqual(['DenyUploadsWithOtherEncryption']);
    expect(denials(put('aws:kms:dsse'))).toEqual(['DenyUploadsWithOtherEncryption']);
    expect(denials(put('AES256'))).toEqual([]);
    // No header: the bucket's default encryption (SSE-S3) applies, as it does to every multipart part.
    expect(denials(put(undefined))).toEqual([]);
    expect(denials(put('AES256', 'false'))).toEqual(['DenyInsecureTransport']);
    const list: RequestFacts = {
      operation: 'ListObjects',
      action: 's3:ListBucket',
      resource: `arn:aws:s3:::${BUCKET}`,
      context: { 'aws:SecureTransport': 'false' },
    };
    expect(denials(list)).toEqual(['DenyInsecureTransport']);
  });

  describe.runIf(requireMoto('bucket policy against recorded S3 requests'))(
    'against every request of real uploads (S3 on moto, through a recording proxy)',
    () => {
      let moto: MotoServer;
      let proxy: Awaited<ReturnType<typeof startRecordingProxy>>;
      let srv: TestServer;
      beforeAll(async () => {
        const aws = await startAwsBackend(BUCKET, 'echoes-policy');
        moto = aws.moto;
        proxy = await startRecordingProxy(moto.endpoint);
        srv = await startTestServer({
          ...aws.env,
          S3_ENDPOINT: proxy.endpoint,
          MAX_AUDIO_FILE_SIZE: String(64 * 1024 * 1024),
          AUDIO_DECODE: 'off',
        });
      }, 60_000);
      afterAll(async () => {
        await srv?.close();
        await proxy?.close();
        await moto?.stop();
      });

      it('lets a single upload and a multipart upload through, start to finish', async () => {
        const api = apiClient(srv.url, await srv.token('policy-alice'));
        const bytes = fixture('wav');
        const ticket = (
          await api.call<Ticket>('POST', '/echoes/upload-url', {
            file_extension: 'wav',
            content_type: 'audio/wav',
            file_size: bytes.length,
          })
        ).body;
        expect((await putBytes(ticket, bytes)).status).toBe(200);
        expect((await api.call('POST', '/echoes', { echo_id: ticket.echo_id })).status).toBe(201);

        const wav = makeToneWav({ seconds: 120, sampleRate: 48000, frequency: 440 });
        const mp = (
          await api.call<MultipartTicket>('POST', '/echoes/multipart', {
            file_extension: 'wav',
            content_type: 'audio/wav',
            file_size: wav.length,
          })
        ).body;
        const numbers = Array.from({ length: mp.part_count }, (_, i) => i + 1);
        const urls = (
          await api.call<PartUrls>('POST', `/echoes/multipart/${mp.echo_id}/parts`, {
            part_numbers: numbers,
          })
        ).body;
        const parts = [];
        for (const n of numbers) {
          const body = wav.subarray((n - 1) * mp.part_size, Math.min(wav.length, n * mp.part_size));
          const put = await fetch(urls.urls[String(n)] ?? '', {
            method: 'PUT',
            headers: urls.headers,
            body,
          });
          expect(put.status, await put.text()).toBe(200);
          parts.push({ part_number: n, etag: put.headers.get('etag') ?? '' });
        }
        expect(
          (await api.call('POST', `/echoes/multipart/${mp.echo_id}/complete`, { parts })).status,
        ).toBe(200);
        expect((await api.call('POST', '/echoes', { echo_id: mp.echo_id })).status).toBe(201);
        expect((await api.call('DELETE', `/echoes/${mp.echo_id}`)).status).toBe(204);

        const operations = new Set(proxy.seen.map((f) => f.operation));
        for (const op of [
          'PutObject',
          'CreateMultipartUpload',
          'UploadPart',
          'CompleteMultipartUpload',
          'DeleteObject',
        ])
          expect(operations, op).toContain(op);
        const denied = proxy.seen
          .map((f) => ({
            operation: f.operation,
            sse: f.context['s3:x-amz-server-side-encryption'],
            denied: denials(f),
          }))
          .filter((d) => d.denied.length > 0);
        expect(denied).toEqual([]);
      });
    },
  );
});
