/**
 * Part 1: malformed and random requests against the built server (local disk + SQLite) across
 * every route, over real sockets. Ideas from test/fuzz.test.ts (which runs fewer, faster, in
 * process); here the count is what matters: no 5xx at all, except a 503 with Retry-After.
 */
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rawExchange } from '../../test/support/raw-http.ts';
import { devToken, pool, serve, sha256, TONE, TONE_EXT, TONE_TYPE, type Target } from './common.ts';

const SEED = Number(process.env.RELIABILITY_FUZZ_SEED ?? 20261128);

const SPECIAL = [
  '',
  ' ',
  'null',
  '__proto__',
  'constructor',
  '../../etc/passwd',
  '\u0000',
  '\ud800',
  '\u202e',
  '😀'.repeat(40),
  'A'.repeat(300),
  '%zz',
  '%00',
  '%2F',
  '%c3%28',
  '..%2f..%2f',
  'wav\r\nX-Injected: 1',
];
const str = fc.oneof(
  { weight: 4, arbitrary: fc.string() },
  { weight: 2, arbitrary: fc.string({ unit: 'binary' }) },
  { weight: 2, arbitrary: fc.constantFrom(...SPECIAL) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: 200, max: 70_000 }), fc.constantFrom('a', 'é', '%', '"', '/'))
      .map(([n, u]) => u.repeat(n)),
  },
);
const junk: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.double(),
  fc.constantFrom(0, -1, 1e308, 2 ** 53 + 1, 1.5, -0),
  str,
  fc.jsonValue({ maxDepth: 3 }),
  fc.array(fc.string(), { maxLength: 30 }),
);
const badJson = fc.oneof(
  str,
  fc.constantFrom(
    '',
    '{',
    '{"a":}',
    "{'a':1}",
    'NaN',
    '\uFEFF{}',
    '[]',
    '1e999',
    '{"a":1}{"b":2}',
    '{"__proto__":{"admin":true}}',
    '{"a":"\\ud800"}',
  ),
  fc.integer({ min: 1, max: 4000 }).map((n) => '['.repeat(n) + ']'.repeat(n)),
  fc.integer({ min: 64 * 1024 - 50, max: 300_000 }).map((n) => ' '.repeat(n)),
);
const headerValue = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.string({
      unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
      maxLength: 60,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '',
      '0',
      '-1',
      '99999999999999999999',
      'bytes=0-',
      'bytes=5-1',
      'bytes=abc',
      '*',
      'gzip',
      'chunked',
      '100-continue',
      'application/json',
      'audio/ogg',
      'text/plain',
    ),
  },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 8000 }).map((n) => 'x'.repeat(n)) },
);
const HEADER_NAMES = [
  'accept',
  'accept-encoding',
  'origin',
  'range',
  'if-none-match',
  'content-encoding',
  'x-http-method-override',
  'x-forwarded-for',
  'x-request-id',
  'cookie',
  'expect',
  'x-amz-checksum-sha256',
];

/** Field names each JSON route knows, so junk lands in known fields as often as in unknown ones. */
const FIELDS: Record<string, string[]> = {
  '/dev/token': ['user_id'],
  '/echoes/upload-url': ['file_extension', 'content_type', 'file_size', 'checksum_sha256'],
  '/echoes/init-upload': ['file_extension', 'content_type', 'file_size', 'checksum_sha256'],
  '/echoes': ['echo_id', 'emotion', 'tags', 'caption', 'duration_seconds', 'location'],
};
const QUERY_NAMES = ['limit', 'cursor', 'from', 'to', 'points', 'x', 'limit[]', '__proto__'];

interface Context {
  readonly echoIds: string[];
  readonly uploadUrls: string[];
  readonly alice: string;
  readonly bob: string;
}

type Shape =
  | {
      kind: 'json';
      method: string;
      path: string;
      body: { fields: [string, unknown][] } | { value: unknown } | { text: string };
    }
  | { kind: 'id'; method: string; suffix: string; id: { real: number } | { text: string } }
  | { kind: 'plain'; method: string; path: string }
  | {
      kind: 'storage';
      method: string;
      url: { real: number } | { text: string };
      bytes: number;
      typeOk: boolean;
    };

const method = (usual: string) =>
  fc.oneof(
    { weight: 10, arbitrary: fc.constant(usual) },
    {
      weight: 1,
      arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'),
    },
  );
const jsonBody = (path: string) =>
  fc.oneof(
    {
      weight: 5,
      arbitrary: fc
        .array(
          fc.tuple(
            fc.oneof(
              { weight: 4, arbitrary: fc.constantFrom(...(FIELDS[path] ?? ['x'])) },
              { weight: 1, arbitrary: fc.string() },
            ),
            junk,
          ),
          { maxLength: 6 },
        )
        .map((fields) => ({ fields })),
    },
    { weight: 2, arbitrary: junk.map((value) => ({ value })) },
    { weight: 2, arbitrary: badJson.map((text) => ({ text })) },
  );
const shapeArb: fc.Arbitrary<Shape> = fc.oneof(
  ...Object.keys(FIELDS).map((path) =>
    fc.record({
      kind: fc.constant('json' as const),
      method: method('POST'),
      path: fc.constant(path),
      body: jsonBody(path),
    }),
  ),
  fc.record({
    kind: fc.constant('id' as const),
    method: fc.constantFrom('GET', 'DELETE', 'GET', 'PUT', 'PATCH'),
    suffix: fc.constantFrom('', '', '/waveform', '/x', '/'),
    id: fc.oneof(
      { weight: 1, arbitrary: fc.nat(19).map((real) => ({ real })) },
      { weight: 3, arbitrary: str.map((text) => ({ text })) },
    ),
  }),
  fc.record({
    kind: fc.constant('plain' as const),
    method: method('GET'),
    path: fc.oneof(
      {
        weight: 6,
        arbitrary: fc.constantFrom(
          '/echoes',
          '/me/usage',
          '/me/export',
          '/me',
          '/health',
          '/health/ready',
          '/',
          '/app.js',
          '/docs',
          '/docs/json',
          '/storage/',
          '/nope',
          '//echoes',
          '/echoes/',
          '/ECHOES',
        ),
      },
      { weight: 1, arbitrary: str.map((s) => `/${s}`) },
    ),
  }),
  fc.record({
    kind: fc.constant('storage' as const),
    method: method('PUT'),
    url: fc.oneof(
      { weight: 2, arbitrary: fc.nat(19).map((real) => ({ real })) },
      { weight: 1, arbitrary: str.map((text) => ({ text })) },
    ),
    bytes: fc.oneof(
      fc.constant(0),
      fc.integer({ min: 1, max: 10_000 }),
      fc.integer({ min: 10_000, max: 200_000 }),
    ),
    typeOk: fc.boolean(),
  }),
);
const reqArb = fc.record({
  shape: shapeArb,
  auth: fc.oneof(
    { weight: 12, arbitrary: fc.constant('alice') },
    { weight: 1, arbitrary: fc.constant('bob') },
    { weight: 1, arbitrary: fc.constant('none') },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        'Bearer',
        'Bearer x.y.z',
        'Basic YQ==',
        'Bearer ' + 'a'.repeat(20_000),
        'bearer ',
      ),
    },
  ),
  contentType: fc.oneof(
    { weight: 8, arbitrary: fc.constant('application/json') },
    { weight: 1, arbitrary: fc.constant(undefined) },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        'text/plain',
        'application/json; charset=latin1',
        'multipart/form-data; boundary=x',
        'application/octet-stream',
        '*/*',
        'APPLICATION/JSON',
      ),
    },
    { weight: 1, arbitrary: headerValue },
  ),
  query: fc.oneof(
    { weight: 3, arbitrary: fc.constant<[string, string][]>([]) },
    {
      weight: 2,
      arbitrary: fc.array(
        fc.tuple(
          fc.constantFrom(...QUERY_NAMES),
          fc.oneof(
            fc.constantFrom(
              '0',
              '-1',
              '1',
              '20',
              '101',
              '1e3',
              '',
              'abc',
              '2026-11-28T00:00:00Z',
              'yesterday',
            ),
            str,
          ),
        ),
        { maxLength: 4 },
      ),
    },
  ),
  headers: fc.oneof(
    { weight: 3, arbitrary: fc.constant<Record<string, string>>({}) },
    {
      weight: 1,
      arbitrary: fc.dictionary(fc.constantFrom(...HEADER_NAMES), headerValue, { maxKeys: 3 }),
    },
  ),
});
type Req = typeof reqArb extends fc.Arbitrary<infer T> ? T : never;

/** Malformed request lines and framing that fetch cannot send. */
const RAW = [
  'GET / HTTP/1.1\r\n\r\n',
  'GARBAGE\r\n\r\n',
  'GET /echoes HTTP/9.9\r\nHost: x\r\n\r\n',
  'GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n',
  'POST /echoes HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello',
  'POST /echoes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
  'POST /echoes/upload-url HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{"a"',
  `GET /${'a'.repeat(70_000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
  `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(20_000)}\r\n\r\n`,
  'GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n',
  'DELETE /echoes/../../x HTTP/1.1\r\nHost: x\r\n\r\n',
  'PUT /storage/x HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n',
];

export interface FuzzResult {
  readonly markdown: string;
  readonly targets: Target[];
}

export async function fuzzPart(total: number): Promise<FuzzResult> {
  const dataDir = mkdtempSync(join(tmpdir(), 'echoes-rel-fuzz-'));
  // The limiter off, so the requests reach the handlers instead of stopping at 429.
  const server = await serve(dataDir, { RATE_LIMIT_PER_MINUTE: '0' });
  const port = Number(new URL(server.url).port);
  try {
    const ctx: Context = {
      echoIds: [],
      uploadUrls: [],
      alice: await devToken(server.url, 'alice'),
      bob: await devToken(server.url, 'bob'),
    };
    // Real ids and signed URLs, so some junk reaches past the lookups.
    for (let i = 0; i < 20; i++) {
      const res = await fetch(`${server.url}/echoes/upload-url`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ctx.alice}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          file_extension: TONE_EXT,
          content_type: TONE_TYPE,
          ...(i % 2 ? { file_size: TONE.length, checksum_sha256: sha256(TONE) } : {}),
        }),
      });
      const t = (await res.json()) as {
        upload_url: string;
        headers: Record<string, string>;
        echo_id: string;
      };
      ctx.echoIds.push(t.echo_id);
      ctx.uploadUrls.push(t.upload_url);
      if (i % 4 === 0) await fetch(t.upload_url, { method: 'PUT', headers: t.headers, body: TONE });
      if (i % 8 === 0)
        await fetch(`${server.url}/echoes`, {
          method: 'POST',
          headers: { authorization: `Bearer ${ctx.alice}`, 'content-type': 'application/json' },
          body: JSON.stringify({ echo_id: t.echo_id }),
        });
    }
    const rawCount = Math.round(total / 20);
    const reqs = fc.sample(reqArb, { numRuns: total - rawCount, seed: SEED });
    const statuses = new Map<number, number>();
    const fiveXX: string[] = [];
    let tolerated503 = 0;
    let unsendable = 0;
    let noAnswer = 0;
    const count = (status: number, what: () => string, retryAfter: string | undefined): void => {
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      if (status === 503 && retryAfter) tolerated503++;
      else if (status >= 500) fiveXX.push(`${status} ${what()}`);
    };
    const t0 = performance.now();
    await pool(reqs, 8, async (r) => {
      const { url, init } = build(server.url, r, ctx);
      let res: Response;
      try {
        res = await fetch(url, { ...init, signal: AbortSignal.timeout(30_000) });
        await res.arrayBuffer();
      } catch (e) {
        // fetch refuses some header values before sending; a closed connection is not a 5xx.
        if (
          e instanceof TypeError &&
          !String(e.cause ?? '').includes('ECONN') &&
          !String(e.cause ?? '').includes('other side closed')
        )
          unsendable++;
        else noAnswer++;
        return;
      }
      count(
        res.status,
        () => `${init.method} ${url.slice(0, 120)}`,
        res.headers.get('retry-after') ?? undefined,
      );
    });
    await pool(
      Array.from({ length: rawCount }, (_, i) => RAW[i % RAW.length] ?? ''),
      4,
      async (raw) => {
        const r = await rawExchange(port, raw, { waitMs: 10_000 });
        if (r.response)
          count(
            r.response.status,
            () => `raw ${JSON.stringify(raw.slice(0, 60))}`,
            r.response.headers['retry-after'],
          );
        else if (r.timedOut)
          fiveXX.push(`no answer within 10 s to raw ${JSON.stringify(raw.slice(0, 60))}`);
        else noAnswer++;
      },
    );
    const seconds = (performance.now() - t0) / 1000;
    const alive = (await fetch(`${server.url}/health`)).status;
    const sent = [...statuses.values()].reduce((a, b) => a + b, 0);
    const byStatus = [...statuses.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([s, n]) => `${s}: ${n}`)
      .join(', ');
    console.log(
      `fuzz: ${sent} answered in ${seconds.toFixed(1)} s; ${byStatus}; 5xx ${fiveXX.length}, tolerated 503 ${tolerated503}`,
    );
    for (const f of fiveXX.slice(0, 10)) console.log(`  5xx: ${f}`);
    const markdown = [
      `### 1. Fuzz: ${total.toLocaleString('en')} malformed requests, local disk + SQLite`,
      '',
      `The built server (\`dist/entry/cli.js serve\`, RATE_LIMIT_PER_MINUTE=0 so requests reach the handlers), ${total - rawCount} requests from fast-check`,
      `(seed ${SEED}) over every route: JSON routes with junk in known and unknown fields, junk JSON, bad JSON text and bodies up to 300 kB;`,
      'echo ids and paths with junk, odd methods, queries and headers, broken tokens, and PUTs to real and forged storage URLs;',
      `plus ${rawCount} raw-socket requests with malformed request lines and framing. 8 at a time, ${seconds.toFixed(1)} s.`,
      '',
      `Answers by status: ${byStatus}. Not sent (fetch refused the header value): ${unsendable}; connection closed without an answer: ${noAnswer}.`,
      `GET /health after the run: ${alive}.`,
      fiveXX.length
        ? `\n5xx seen (first 5): ${fiveXX
            .slice(0, 5)
            .map((f) => `\`${f.replace(/`/g, "'")}\``)
            .join('; ')}`
        : '',
    ].join('\n');
    return {
      markdown,
      targets: [
        {
          part: 'fuzz',
          target: '5xx answers: 0',
          measured: `${fiveXX.length} (503 with Retry-After, tolerated: ${tolerated503})`,
          pass: fiveXX.length === 0,
        },
        {
          part: 'fuzz',
          target: 'server still healthy after the run',
          measured: `GET /health ${alive}`,
          pass: alive === 200,
        },
      ],
    };
  } finally {
    server.child.kill('SIGTERM');
    await server.exited;
    rmSync(dataDir, { recursive: true, force: true });
  }
}

function build(base: string, r: Req, ctx: Context): { url: string; init: RequestInit } {
  const headers: Record<string, string> = { ...r.headers };
  if (r.auth === 'alice') headers.authorization = `Bearer ${ctx.alice}`;
  else if (r.auth === 'bob') headers.authorization = `Bearer ${ctx.bob}`;
  else if (r.auth !== 'none') headers.authorization = r.auth;
  const s = r.shape;
  let url: string;
  let body: string | Uint8Array | undefined;
  if (s.kind === 'json') {
    url = base + s.path;
    const b = s.body;
    body =
      'text' in b
        ? b.text
        : (JSON.stringify('fields' in b ? Object.fromEntries(b.fields) : b.value) ?? 'undefined');
    if (r.contentType !== undefined) headers['content-type'] = r.contentType;
  } else if (s.kind === 'id') {
    const id = 'real' in s.id ? (ctx.echoIds[s.id.real] ?? 'x') : pct(s.id.text);
    url = `${base}/echoes/${id}${s.suffix}`;
  } else if (s.kind === 'plain') {
    url = base + (s.path.startsWith('//') ? s.path : pct(s.path, /[\x21-\x7e]/));
  } else {
    url =
      'real' in s.url
        ? (ctx.uploadUrls[s.url.real] ?? `${base}/storage/x`)
        : `${base}/storage/${pct(s.url.text)}`;
    body = s.bytes === 0 ? undefined : new Uint8Array(s.bytes).fill(s.bytes % 251);
    headers['content-type'] = s.typeOk ? TONE_TYPE : (r.contentType ?? 'application/octet-stream');
  }
  const u = new URL(url);
  for (const [k, v] of r.query) u.searchParams.append(k, v);
  if (s.method === 'GET' || s.method === 'HEAD') body = undefined;
  return { url: u.href, init: { method: s.method, headers, body } };
}

/** Percent-encodes the UTF-8 bytes outside `keep` (lone surrogates included, which encodeURIComponent refuses). */
function pct(text: string, keep = /[A-Za-z0-9\-_.~]/): string {
  let out = '';
  for (const ch of text) {
    if (ch.length === 1 && keep.test(ch)) out += ch;
    else
      for (const b of Buffer.from(ch, 'utf8'))
        out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
