/**
 * Malformed requests against the real server (local store + SQLite on a fresh DATA_DIR): every
 * answer must be below 500, and every error must be the contract's {"error":{"code","message"}}.
 * Most requests go through Fastify's inject (fast); the ones inject cannot express (raw request
 * lines, header overflow, bad framing) go over a real socket.
 *
 * Reproduce a failure with the printed seed: FUZZ_SEED=<seed> npx vitest run test/fuzz.test.ts
 * (FUZZ_RUNS changes the number of requests per route family).
 */
import fc from 'fast-check';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { SignJWT } from 'jose';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { METHODS } from 'node:http';
import { join, relative, sep } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EMPTY_METADATA } from '../../src/domain/echo.ts';
import { loadOrCreateSecret } from '../../src/auth/secrets.ts';
import { DEV_ISSUER, devSecretFile } from '../../src/auth/tokens.ts';
import { apiClient, fixture, putBytes, sha256, type Ticket } from '../support/api.ts';
import { errorShapeProblem } from '../support/error-shape.ts';
import { rawExchange } from '../support/raw-http.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 20261128);
const RUNS = Number(process.env.FUZZ_RUNS ?? 2000);
const RAW_RUNS = Number(process.env.FUZZ_RAW_RUNS ?? 400);
const MAX_AUDIO = 100_000;
const CONCURRENCY = 8;

// ---------------------------------------------------------------------------------------------
// Values that print short: a 100 KiB string in a counterexample would drown the report.

class Huge {
  constructor(
    readonly length: number,
    readonly unit: string,
  ) {}
  toString(): string {
    return this.unit.repeat(Math.ceil(this.length / this.unit.length));
  }
  toJSON(): string {
    return this.toString();
  }
  [fc.toStringMethod](): string {
    return `Huge(${this.length} x ${JSON.stringify(this.unit)})`;
  }
}

class Bytes {
  constructor(
    readonly length: number,
    readonly fill: number,
  ) {}
  buffer(): Buffer {
    return Buffer.alloc(this.length, this.fill);
  }
  [fc.toStringMethod](): string {
    return `Bytes(${this.length} x ${this.fill})`;
  }
}

const text = (v: string | Huge): string => (typeof v === 'string' ? v : v.toString());

// ---------------------------------------------------------------------------------------------
// Building blocks

const BAD_PERCENT = [
  '%zz',
  '%',
  '%e9',
  '%c3%28',
  '%00',
  '%2F',
  '%2e%2e',
  '%ff%fe',
  '%u0041',
  '%%',
  'a%2',
  '%F0%9F',
  '%ED%A0%80',
  '%C0%AF',
  '%0d%0a',
];
const SPECIAL_STRINGS = [
  '',
  ' ',
  'null',
  'undefined',
  '__proto__',
  'constructor',
  'prototype',
  '../../etc/passwd',
  '\u0000',
  '\ud800',
  '\u202e',
  'wav; rm -rf /',
  'audio/wav\r\nX-Injected: 1',
  '\uFEFF',
  '😀'.repeat(40),
  'A'.repeat(257),
];

const huge = (min: number, max: number): fc.Arbitrary<Huge> =>
  fc
    .tuple(fc.integer({ min, max }), fc.constantFrom('a', 'é', '😀', '%', '\\', '"', '0', '/'))
    .map(([n, unit]) => new Huge(n, unit));

const anyString: fc.Arbitrary<string | Huge> = fc.oneof(
  { weight: 4, arbitrary: fc.string() },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme' }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary' }) },
  { weight: 2, arbitrary: fc.constantFrom(...SPECIAL_STRINGS) },
  { weight: 1, arbitrary: huge(200, 70_000) },
);

const junkValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.double(),
  fc.constantFrom(0, -1, 1e308, -1e308, 2 ** 53 + 1, 1.5, -0),
  anyString,
  fc.jsonValue({ maxDepth: 3 }),
  fc.array(fc.string(), { maxLength: 30 }),
  fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 5 }),
);

/** Header values a socket could carry (visible ASCII and obs-text), plus a few long ones. */
const headerValue: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.string({
      unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
      maxLength: 60,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.string({
      unit: fc.integer({ min: 0x80, max: 0xff }).map((c) => String.fromCharCode(c)),
      maxLength: 20,
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
      'bytes=-0',
      'bytes=5-1',
      'bytes=0-1,2-3',
      'bytes=abc',
      'bytes=99999999999999999999-',
      '*',
      'W/"x"',
      'null',
      'chunked',
      'gzip',
      '100-continue',
      'close',
      'keep-alive',
      'websocket',
      'http://evil.example',
      'application/json',
      'text/plain',
      '\t',
    ),
  },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 8000 }).map((n) => 'x'.repeat(n)) },
);

const ODD_HEADER_NAMES = [
  'x-request-id',
  'accept',
  'accept-encoding',
  'origin',
  'range',
  'if-none-match',
  'if-modified-since',
  'x-amz-checksum-sha256',
  'x-amz-server-side-encryption',
  'cookie',
  'expect',
  'content-encoding',
  'content-length',
  'transfer-encoding',
  'x-http-method-override',
  'host',
  'x-forwarded-for',
  'forwarded',
  'access-control-request-method',
  'access-control-request-headers',
  'connection',
  'upgrade',
  'user-agent',
];
const oddHeaders: fc.Arbitrary<Record<string, string>> = fc.oneof(
  { weight: 3, arbitrary: fc.constant({}) },
  {
    weight: 2,
    arbitrary: fc.dictionary(fc.constantFrom(...ODD_HEADER_NAMES), headerValue, { maxKeys: 3 }),
  },
);

type AuthKind =
  | { kind: 'alice' }
  | { kind: 'bob' }
  | { kind: 'none' }
  | { kind: 'broken'; index: number };
const BROKEN_TOKEN_COUNT = 22;
const authArb: fc.Arbitrary<AuthKind> = fc.oneof(
  { weight: 16, arbitrary: fc.constant({ kind: 'alice' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'bob' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'none' as const }) },
  {
    weight: 3,
    arbitrary: fc
      .integer({ min: 0, max: BROKEN_TOKEN_COUNT - 1 })
      .map((index) => ({ kind: 'broken' as const, index })),
  },
);

const JSON_TYPES = [
  'application/json; charset=utf-8',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  '',
  'APPLICATION/JSON',
  'application/json;;',
  'application/json; charset=latin1',
  'application/json; charset=utf-16',
  'application/octet-stream',
  'application/jsonx',
  'json',
  '*/*',
  'application/*',
  'audio/wav',
  'application/json, text/plain',
  'application/problem+json',
];
const contentTypeArb: fc.Arbitrary<string | undefined> = fc.oneof(
  { weight: 14, arbitrary: fc.constant('application/json') },
  { weight: 1, arbitrary: fc.constant(undefined) },
  { weight: 3, arbitrary: fc.constantFrom(...JSON_TYPES) },
  { weight: 1, arbitrary: headerValue },
);

const badJsonText: fc.Arbitrary<string | Huge> = fc.oneof(
  anyString,
  fc.constantFrom(
    '',
    ' ',
    '{',
    '}',
    '[',
    '{"a":}',
    '{"a":1,}',
    "{'a':1}",
    'NaN',
    'undefined',
    '\uFEFF{}',
    'null',
    '[]',
    '"str"',
    '1e999',
    '{"a":1}{"b":2}',
    '{"__proto__":{"admin":true}}',
    '{"constructor":{"prototype":{"x":1}}}',
    '\u0000',
    '{"a":"\\ud800"}',
    '{"a":"\\u0000"}',
    'true',
    '-0',
  ),
  fc.integer({ min: 1, max: 4000 }).map((n) => '['.repeat(n) + ']'.repeat(n)),
  fc.integer({ min: 1, max: 4000 }).map((n) => '{"a":'.repeat(n) + '1' + '}'.repeat(n)),
  fc.json().map((s) => s.slice(0, Math.floor(s.length / 2))),
  fc.integer({ min: 64 * 1024 - 50, max: 300_000 }).map((n) => new Huge(n, ' ')),
);

interface Field {
  readonly name: string;
  readonly valid: fc.Arbitrary<unknown>;
  readonly required?: boolean;
}

type Mutation =
  | { op: 'drop'; field: string }
  | { op: 'set'; field: string; value: unknown }
  | { op: 'add'; field: string; value: unknown };

type BodyCase =
  | { kind: 'object'; entries: [string, unknown][]; unknownField: boolean }
  | { kind: 'value'; value: unknown }
  | { kind: 'text'; text: string | Huge }
  | { kind: 'none' };

/** A valid body for the route's fields, then up to three mutations, or something else entirely. */
function bodyArb(fields: readonly Field[]): fc.Arbitrary<BodyCase> {
  const names = fields.map((f) => f.name);
  const misspell = fc
    .tuple(fc.constantFrom(...names), fc.nat())
    .map(([name, n]) => {
      const i = n % name.length;
      const swaps = [
        name.slice(0, i) + name.slice(i + 1),
        name.toUpperCase(),
        `${name}_`,
        name.replace(/_/g, '-'),
        `${name.slice(0, i)}${name[i + 1] ?? ''}${name[i] ?? ''}${name.slice(i + 2)}`,
      ];
      return swaps[n % swaps.length] ?? `${name}x`;
    })
    .filter((s) => !names.includes(s));
  const extraName = fc
    .oneof(
      misspell,
      fc.string({ minLength: 1 }),
      fc.constantFrom('__proto__', 'constructor', 'id', 'user_id', 'status', 'key', ''),
    )
    .filter((s) => !names.includes(s));
  const mutation: fc.Arbitrary<Mutation> = fc.oneof(
    fc.constantFrom(...names).map((field) => ({ op: 'drop' as const, field })),
    fc
      .tuple(fc.constantFrom(...names), junkValue)
      .map(([field, value]) => ({ op: 'set' as const, field, value })),
    fc.tuple(extraName, junkValue).map(([field, value]) => ({ op: 'add' as const, field, value })),
  );
  const base = fc.record(
    Object.fromEntries(
      fields.map((f) => [f.name, f.required ? f.valid : fc.option(f.valid, { nil: undefined })]),
    ),
  );
  const mutated = fc
    .tuple(base, fc.array(mutation, { minLength: 0, maxLength: 3 }))
    .map(([valid, mutations]): BodyCase => {
      const entries: [string, unknown][] = Object.entries(valid).filter(([, v]) => v !== undefined);
      let unknownField = false;
      for (const m of mutations) {
        const at = entries.findIndex(([k]) => k === m.field);
        if (m.op === 'drop') {
          if (at >= 0) entries.splice(at, 1);
        } else if (m.op === 'set') {
          if (at >= 0) entries[at] = [m.field, m.value];
          else entries.push([m.field, m.value]);
        } else {
          entries.push([m.field, m.value]);
          unknownField = true;
        }
      }
      return { kind: 'object', entries, unknownField };
    });
  return fc.oneof(
    { weight: 12, arbitrary: mutated },
    { weight: 2, arbitrary: junkValue.map((value): BodyCase => ({ kind: 'value', value })) },
    { weight: 3, arbitrary: badJsonText.map((t): BodyCase => ({ kind: 'text', text: t })) },
    { weight: 1, arbitrary: fc.constant<BodyCase>({ kind: 'none' }) },
  );
}

/** JSON text as written, so duplicate and "__proto__" keys reach the server as such. */
function bodyText(body: BodyCase): string | undefined {
  switch (body.kind) {
    case 'none':
      return undefined;
    case 'text':
      return text(body.text);
    case 'value':
      return JSON.stringify(body.value) ?? 'null';
    case 'object':
      return `{${body.entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v) ?? 'null'}`).join(',')}}`;
  }
}

const queryPair: fc.Arbitrary<string> = fc
  .tuple(
    fc.oneof(
      fc.constantFrom(
        'limit',
        'cursor',
        'from',
        'to',
        'limt',
        'curser',
        'form',
        'limit[]',
        'limit[0]',
        'a[b]',
        '__proto__',
        'constructor',
        '',
        'LIMIT',
        'to ',
        'x',
      ),
      fc.string().map(encodeURIComponent),
    ),
    fc.oneof(
      fc.constantFrom(
        '',
        '1',
        '0',
        '-1',
        '100',
        '101',
        '1.5',
        '1e2',
        '0x10',
        'abc',
        'true',
        'null',
        '2024-01-01',
        '2024-13-45',
        '2024-01-01T00:00:00Z',
        '2024-01-01T25:61:61Z',
        '9999-12-31',
        '0000-01-01',
        '-271821-04-20',
        '+275760-09-13',
        '2024-02-30',
        'now',
        '1700000000',
        'MTIz',
        'eyJhIjoxfQ',
      ),
      fc.constantFrom(...BAD_PERCENT),
      fc.string().map(encodeURIComponent),
      fc.string({ unit: 'grapheme' }),
      fc.integer({ min: 100, max: 6000 }).map((n) => 'z'.repeat(n)),
    ),
    fc.constantFrom('=', '=', '=', ''),
  )
  .map(([k, v, eq]) => `${k}${eq}${eq ? v : ''}`);

const queryString: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constant('') },
  { weight: 1, arbitrary: fc.constantFrom('?', '?&', '?&&', '?=', '?==', '?#frag', '?;') },
  {
    weight: 6,
    arbitrary: fc
      .array(queryPair, { minLength: 1, maxLength: 5 })
      .map((pairs) => `?${pairs.join('&')}`),
  },
);

/** A path segment where an echo id goes; SYMBOLIC ids are replaced with real ones at run time. */
type IdSegment = { real: 'ready' | 'pending' } | { literal: string | Huge };
const idSegment: fc.Arbitrary<IdSegment> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom<IdSegment>({ real: 'ready' }, { real: 'pending' }) },
  { weight: 2, arbitrary: fc.uuid({ version: 7 }).map((s): IdSegment => ({ literal: s })) },
  { weight: 1, arbitrary: fc.uuid().map((s): IdSegment => ({ literal: s.toUpperCase() })) },
  { weight: 2, arbitrary: fc.string().map((s): IdSegment => ({ literal: encodeURIComponent(s) })) },
  {
    weight: 1,
    arbitrary: fc
      .string({ unit: 'grapheme', minLength: 1 })
      .map((s): IdSegment => ({ literal: s.replace(/[/?#\s%]/g, '') || 'é' })),
  },
  {
    weight: 3,
    arbitrary: fc
      .tuple(
        fc.stringMatching(/^[a-z0-9-]{0,8}$/),
        fc.constantFrom(...BAD_PERCENT),
        fc.stringMatching(/^[a-z0-9-]{0,8}$/),
      )
      .map(([a, b, c]): IdSegment => ({ literal: a + b + c })),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom<IdSegment>(
      { literal: '..' },
      { literal: '.' },
      { literal: '' },
      { literal: 'a/b' },
      { literal: '%2e%2e%2f' },
      { literal: ';' },
    ),
  },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: 2000, max: 9000 })
      .map((n): IdSegment => ({ literal: new Huge(n, 'a') })),
  },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: 200, max: 3000 })
      .map((n): IdSegment => ({ literal: new Huge(n, '%zz') })),
  },
);

const FORMATS: readonly [string, string][] = [
  ['webm', 'audio/webm'],
  ['wav', 'audio/wav'],
  ['mp3', 'audio/mpeg'],
  ['m4a', 'audio/mp4'],
  ['ogg', 'audio/ogg'],
  ['flac', 'audio/flac'],
  ['aac', 'audio/aac'],
];
const formatArb = fc.constantFrom(...FORMATS);
/** Now and then the same request twice at once. */
const copiesArb: fc.Arbitrary<number | undefined> = fc.oneof(
  { weight: 7, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: fc.constant(2) },
);

// ---------------------------------------------------------------------------------------------
// One request, and what is checked on its answer

interface FuzzRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  payload?: string | Buffer | undefined;
  /** Only documented extra top-level fields of an error body (GET /health/ready). */
  extraTopLevel?: readonly string[];
  /** A JSON body carried a field the route does not define: it must never be accepted. */
  unknownField?: boolean;
  /** Sent this many times at once (races on the same upload or echo). */
  copies?: number;
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  body: string;
}

/** What is wrong with an answer; undefined when nothing is. */
function problemWith(req: FuzzRequest, res: Answer): string | undefined {
  if (res.status >= 500) return `status ${res.status}: ${res.body.slice(0, 300)}`;
  if (res.status >= 400 && req.method !== 'HEAD') {
    const type = String(res.headers['content-type'] ?? '');
    if (!type.startsWith('application/json'))
      return `status ${res.status} with content-type "${type}": ${res.body.slice(0, 200)}`;
    const shape = errorShapeProblem(res.body, req.extraTopLevel);
    if (shape) return `status ${res.status}, ${shape}`;
  }
  if (req.unknownField && res.status < 300)
    return `status ${res.status}: a body with an unknown field was accepted`;
  return undefined;
}

function describeRequest(req: FuzzRequest): string {
  const payload =
    req.payload === undefined
      ? ''
      : `\n  body (${req.payload.length} ${typeof req.payload === 'string' ? 'chars' : 'bytes'}): ${JSON.stringify(req.payload.toString().slice(0, 300))}`;
  const headers = Object.fromEntries(
    Object.entries(req.headers).map(([k, v]) => [
      k,
      k === 'authorization' ? short(v, 24) : short(v, 300),
    ]),
  );
  return `${req.method} ${short(req.url, 300)}\n  headers: ${JSON.stringify(headers)}${payload}`;
}

interface Violation {
  readonly family: string;
  readonly problem: string;
  readonly request: string;
  readonly generated: string;
  count: number;
}

// ---------------------------------------------------------------------------------------------

describe('fuzz: malformed requests get a contract error, never a 5xx', () => {
  let srv: TestServer;
  let app: FastifyInstance;
  let port: number;
  let tokens: { alice: string; bob: string; broken: string[] };
  let readyEcho: { id: string; audioUrl: string; uploadUrl: string };
  let goneAudioUrl: string;
  const issuedKeys = new Set<string>();
  const counts = new Map<string, number>();
  const violations = new Map<string, Violation>();

  beforeAll(async () => {
    // Thousands of upload URLs for one user: limits would answer 403/429 before the routes are reached.
    srv = await startTestServer({
      MAX_AUDIO_FILE_SIZE: String(MAX_AUDIO),
      USER_QUOTA_BYTES: '0',
      USER_MAX_PENDING_UPLOADS: '0',
    });
    app = srv.server.app;
    port = Number(new URL(srv.url).port);
    const alice = await srv.token('alice');
    const key = loadOrCreateSecret(devSecretFile(srv.dataDir));
    const now = Math.floor(Date.now() / 1000);
    const jwt = (claims: Record<string, unknown>, signingKey: Uint8Array = key): Promise<string> =>
      new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).sign(signingKey);
    const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
    const flip = (s: string, at: number): string =>
      s.slice(0, at) + (s[at] === 'A' ? 'B' : 'A') + s.slice(at + 1);
    const broken = [
      '',
      'Bearer',
      'Bearer ',
      'Bearer x.y.z',
      'Basic YWxhZGRpbjpvcGVuc2VzYW1l',
      `bearer ${alice}`,
      `Bearer  ${alice}`,
      `Bearer ${alice}x`,
      `Bearer ${flip(alice, 40)}`,
      `Bearer ${flip(alice, alice.length - 3)}`,
      alice,
      `Bearer ${'a'.repeat(20_000)}`,
      `Bearer ${alice} ${alice}`,
      `Bearer ${await jwt({ sub: 'alice', iss: DEV_ISSUER, iat: now })}`,
      `Bearer ${await jwt({ sub: 'alice', iss: DEV_ISSUER, iat: now - 7200, exp: now - 3600 })}`,
      `Bearer ${await jwt({ sub: 'alice', iss: DEV_ISSUER, iat: now + 365 * 86400, exp: now + 2 * 365 * 86400 })}`,
      `Bearer ${await jwt({ sub: 'alice', iss: 'someone-else', exp: now + 3600 })}`,
      `Bearer ${await jwt({ sub: '../etc', iss: DEV_ISSUER, exp: now + 3600 })}`,
      `Bearer ${await jwt({ sub: 'x'.repeat(300), iss: DEV_ISSUER, exp: now + 3600 })}`,
      `Bearer ${await jwt({ iss: DEV_ISSUER, exp: now + 3600 })}`,
      `Bearer ${await jwt({ sub: 'alice', iss: DEV_ISSUER, exp: now + 3600 }, randomBytes(32))}`,
      `Bearer ${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'alice', iss: DEV_ISSUER, exp: now + 3600 })}.`,
    ];
    expect(broken).toHaveLength(BROKEN_TOKEN_COUNT);
    tokens = { alice, bob: await srv.token('bob'), broken };

    readyEcho = await createEcho();
    const gone = await createEcho();
    expect(
      (await inject({ method: 'DELETE', url: `/echoes/${gone.id}`, headers: authHeaders() }))
        .status,
    ).toBe(204);
    goneAudioUrl = gone.audioUrl;
  });

  afterAll(async () => {
    await srv?.close();
  });

  function authHeaders(kind: AuthKind = { kind: 'alice' }): Record<string, string> {
    switch (kind.kind) {
      case 'alice':
        return { authorization: `Bearer ${tokens.alice}` };
      case 'bob':
        return { authorization: `Bearer ${tokens.bob}` };
      case 'none':
        return {};
      case 'broken':
        return { authorization: tokens.broken[kind.index] ?? '' };
    }
  }

  async function inject(req: FuzzRequest): Promise<Answer> {
    const options: InjectOptions = {
      method: req.method as InjectOptions['method'],
      url: req.url,
      headers: req.headers,
      ...(req.payload === undefined ? {} : { payload: req.payload }),
    };
    const res = await app.inject(options);
    return { status: res.statusCode, headers: res.headers, body: res.body };
  }

  async function issue(
    spec: Record<string, unknown> = { file_extension: 'ogg', content_type: 'audio/ogg' },
  ): Promise<Ticket> {
    const res = await inject({
      method: 'POST',
      url: '/echoes/upload-url',
      headers: { ...authHeaders(), 'content-type': 'application/json' },
      payload: JSON.stringify(spec),
    });
    expect(res.status, res.body).toBe(200);
    const ticket = JSON.parse(res.body) as Ticket;
    issuedKeys.add(ticket.s3_key);
    return ticket;
  }

  async function put(ticket: Ticket, bytes: Buffer): Promise<Answer> {
    const url = new URL(ticket.upload_url);
    return inject({
      method: 'PUT',
      url: url.pathname + url.search,
      headers: { ...ticket.headers },
      payload: bytes,
    });
  }

  /**
   * A ready echo with real stored bytes. `decoded: false` makes it ready straight through the
   * repository, as an echo from before decoding: the DELETE family needs hundreds of targets, and
   * a decode each (POST /echoes, fuzzed on its own) would make it take minutes.
   */
  async function createEcho(
    options: { decoded?: boolean } = {},
  ): Promise<{ id: string; audioUrl: string; uploadUrl: string }> {
    const bytes = fixture('ogg');
    const ticket = await issue({
      file_extension: 'ogg',
      content_type: 'audio/ogg',
      file_size: bytes.length,
      checksum_sha256: sha256(bytes),
    });
    const stored = await put(ticket, bytes);
    expect(stored.status, stored.body).toBe(200);
    if (options.decoded === false) {
      const ready = await srv.server.composition.repo.markReady(
        { userId: 'alice', echoId: ticket.echo_id },
        { fileSize: bytes.length, metadata: EMPTY_METADATA },
      );
      expect(ready?.status).toBe('ready');
      return { id: ticket.echo_id, audioUrl: '', uploadUrl: ticket.upload_url };
    }
    const created = await inject({
      method: 'POST',
      url: '/echoes',
      headers: { ...authHeaders(), 'content-type': 'application/json' },
      payload: JSON.stringify({ echo_id: ticket.echo_id }),
    });
    expect(created.status, created.body).toBe(201);
    const echo = JSON.parse(created.body) as { echo_id: string; audio_url: string };
    return { id: echo.echo_id, audioUrl: echo.audio_url, uploadUrl: ticket.upload_url };
  }

  function record(
    family: string,
    problem: string,
    req: FuzzRequest,
    generated: unknown,
    index: number,
  ): void {
    counts.set(family, (counts.get(family) ?? 0) + 1);
    // One entry per kind of failure: the status and the first words of what is wrong.
    const signature = `${family} | ${problem.replace(/:.*$/s, '').slice(0, 120)}`;
    const known = violations.get(signature);
    if (known) known.count += 1;
    else
      violations.set(signature, {
        family,
        problem,
        request: describeRequest(req),
        generated: `run #${index}: ${fc.stringify(generated)}`,
        count: 1,
      });
  }

  function count(family: string): void {
    counts.set(family, (counts.get(family) ?? 0) + 1);
  }

  /**
   * Sends every generated request of one family, a few at a time (the server waits on disk and
   * SQLite too), and records what is wrong; fails listing each kind of failure once. The values
   * come from the fixed seed, so run #n is the same request on every run.
   */
  async function fuzz<T>(
    family: string,
    arb: fc.Arbitrary<T>,
    build: (value: T) => Promise<FuzzRequest>,
    runs = RUNS,
  ): Promise<void> {
    await inParallel(fc.sample(arb, { seed: SEED, numRuns: runs }), async (value, index) => {
      const req = await build(value);
      let answers: Answer[];
      try {
        answers = await Promise.all(Array.from({ length: req.copies ?? 1 }, () => inject(req)));
      } catch (err) {
        record(
          family,
          `inject refused the request (a generator bug): ${(err as Error).message}`,
          req,
          value,
          index,
        );
        return;
      }
      const problem = answers.map((res) => problemWith(req, res)).find((p) => p !== undefined);
      if (problem)
        record(
          family,
          `${req.copies ? `(sent ${req.copies}x at once) ` : ''}${problem}`,
          req,
          value,
          index,
        );
      else count(family);
    });
    expectNoViolations(family);
  }

  function expectNoViolations(family: string): void {
    const found = [...violations.values()].filter((v) => v.family === family);
    const report = found
      .map(
        (v) =>
          `- ${v.count}x ${v.problem}\n  e.g. ${v.request}\n  generated: ${short(v.generated, 600)}`,
      )
      .join('\n');
    expect(
      found.length,
      `fuzz seed ${SEED} (FUZZ_SEED=${SEED} npx vitest run test/fuzz.test.ts), ${family}:\n${report}\n`,
    ).toBe(0);
  }

  const jsonRoute =
    (family: string, path: string, fields: readonly Field[], withAuth = true) =>
    async (): Promise<void> => {
      const arb = fc.record({
        body: bodyArb(fields),
        type: contentTypeArb,
        auth: authArb,
        headers: oddHeaders,
        query: fc.oneof(
          { weight: 5, arbitrary: fc.constant('') },
          { weight: 1, arbitrary: queryString },
        ),
      });
      await fuzz(family, arb, async (c) => {
        const payload = bodyText(c.body);
        const headers: Record<string, string> = {
          ...(withAuth ? authHeaders(c.auth) : {}),
          ...c.headers,
        };
        if (c.type !== undefined) headers['content-type'] = c.type;
        return {
          method: 'POST',
          url: path + c.query,
          headers,
          payload,
          unknownField: c.body.kind === 'object' && c.body.unknownField,
        };
      });
    };

  const uploadFields: Field[] = [
    {
      name: 'file_extension',
      required: true,
      valid: fc.constantFrom(...FORMATS.map(([e]) => e), 'WAV', 'Mp3'),
    },
    {
      name: 'content_type',
      required: true,
      valid: fc.constantFrom(
        ...FORMATS.map(([, t]) => t),
        'audio/webm;codecs=opus',
        'audio/x-wav',
        'audio/wav; charset=x',
      ),
    },
    { name: 'file_size', valid: fc.integer({ min: 1, max: MAX_AUDIO + 10 }) },
    {
      name: 'checksum_sha256',
      valid: fc
        .uint8Array({ minLength: 32, maxLength: 32 })
        .map((b) => Buffer.from(b).toString('base64')),
    },
  ];

  it(
    'POST /echoes/upload-url',
    jsonRoute('POST /echoes/upload-url', '/echoes/upload-url', uploadFields),
  );
  it(
    'POST /echoes/init-upload',
    jsonRoute('POST /echoes/init-upload', '/echoes/init-upload', uploadFields),
  );
  it(
    'POST /dev/token',
    jsonRoute(
      'POST /dev/token',
      '/dev/token',
      [{ name: 'user_id', required: true, valid: fc.stringMatching(/^[a-z0-9]{1,12}$/) }],
      false,
    ),
  );

  it('POST /echoes', async () => {
    const fields: Field[] = [
      // Uploads (a real file or junk bytes) cost a decode each: fewer of them, so the family stays in minutes.
      {
        name: 'echo_id',
        required: true,
        valid: fc.oneof(
          { weight: 4, arbitrary: fc.constantFrom('READY', 'PENDING') },
          { weight: 1, arbitrary: fc.constantFrom('UPLOADED', 'JUNK') },
        ),
      },
      { name: 'emotion', valid: fc.oneof(fc.constant(null), fc.string({ maxLength: 64 })) },
      {
        name: 'tags',
        valid: fc.array(fc.string({ minLength: 1, maxLength: 64 }), { maxLength: 20 }),
      },
      {
        name: 'caption',
        valid: fc.oneof(fc.constant(null), fc.string({ unit: 'grapheme', maxLength: 200 })),
      },
      {
        name: 'duration_seconds',
        valid: fc.oneof(fc.constant(null), fc.double({ min: 0, max: 86400, noNaN: true })),
      },
      {
        name: 'location',
        valid: fc.oneof(
          fc.constant(null),
          fc.record({
            lat: fc.double({ min: -90, max: 90, noNaN: true }),
            lng: fc.double({ min: -180, max: 180, noNaN: true }),
          }),
        ),
      },
    ];
    const arb = fc.record({
      body: bodyArb(fields),
      type: contentTypeArb,
      auth: authArb,
      headers: oddHeaders,
      junk: fc.uint8Array({ minLength: 1, maxLength: 2000 }),
      copies: copiesArb,
    });
    await fuzz('POST /echoes', arb, async (c) => {
      // Symbolic echo ids become real ones: a ready echo, a pending upload, a real upload, junk bytes.
      let body = c.body;
      if (body.kind === 'object') {
        const entries: [string, unknown][] = [];
        for (const [k, v] of body.entries) {
          if (
            k !== 'echo_id' ||
            typeof v !== 'string' ||
            !['READY', 'PENDING', 'UPLOADED', 'JUNK'].includes(v)
          ) {
            entries.push([k, v]);
            continue;
          }
          if (v === 'READY') {
            entries.push([k, readyEcho.id]);
          } else {
            const ticket = await issue();
            if (v !== 'PENDING')
              expect(
                (await put(ticket, v === 'UPLOADED' ? fixture('ogg') : Buffer.from(c.junk))).status,
              ).toBe(200);
            entries.push([k, ticket.echo_id]);
          }
        }
        body = { ...body, entries };
      }
      const headers: Record<string, string> = { ...authHeaders(c.auth), ...c.headers };
      if (c.type !== undefined) headers['content-type'] = c.type;
      return {
        method: 'POST',
        url: '/echoes',
        headers,
        payload: bodyText(body),
        unknownField: body.kind === 'object' && body.unknownField,
        copies: c.copies,
      };
    });
  }, 180_000);

  it('GET /echoes', async () => {
    const arb = fc.record({
      path: fc.constantFrom(
        '/echoes',
        '/echoes',
        '/echoes',
        '/echoes/',
        '//echoes',
        '/echoes//',
        '/ECHOES',
      ),
      query: queryString,
      auth: authArb,
      headers: oddHeaders,
      body: fc.option(badJsonText, { freq: 8, nil: undefined }),
    });
    await fuzz('GET /echoes', arb, async (c) => ({
      method: 'GET',
      url: c.path + c.query,
      headers: { ...authHeaders(c.auth), ...c.headers },
      payload: c.body === undefined ? undefined : text(c.body),
    }));
  });

  const idUrl = async (segment: IdSegment, suffix: string, forDelete: boolean): Promise<string> => {
    if ('literal' in segment) return `/echoes/${text(segment.literal)}${suffix}`;
    if (segment.real === 'pending') return `/echoes/${(await issue()).echo_id}${suffix}`;
    return `/echoes/${forDelete ? (await createEcho({ decoded: false })).id : readyEcho.id}${suffix}`;
  };
  const idArb = fc.record({
    id: idSegment,
    suffix: fc.oneof(
      { weight: 6, arbitrary: fc.constant('') },
      { weight: 1, arbitrary: fc.constantFrom('/', '//', '/x', '/..', '/%zz') },
      { weight: 2, arbitrary: queryString },
    ),
    auth: authArb,
    headers: oddHeaders,
    copies: copiesArb,
  });

  it('GET /echoes/{id}', async () => {
    await fuzz('GET /echoes/{id}', idArb, async (c) => ({
      method: 'GET',
      url: await idUrl(c.id, c.suffix, false),
      headers: { ...authHeaders(c.auth), ...c.headers },
    }));
  });

  it('DELETE /echoes/{id}', async () => {
    await fuzz('DELETE /echoes/{id}', idArb, async (c) => ({
      method: 'DELETE',
      url: await idUrl(c.id, c.suffix, true),
      headers: { ...authHeaders(c.auth), ...c.headers },
      copies: c.copies,
    }));
  });

  const healthRoute = (family: string, path: string) => async (): Promise<void> => {
    const arb = fc.record({
      method: fc.constantFrom('GET', 'GET', 'GET', 'GET', 'HEAD'),
      suffix: fc.constantFrom('', '', '', '/', '//'),
      query: queryString,
      auth: authArb,
      headers: oddHeaders,
      body: fc.option(badJsonText, { freq: 8, nil: undefined }),
      type: contentTypeArb,
    });
    await fuzz(family, arb, async (c) => {
      const headers: Record<string, string> = { ...authHeaders(c.auth), ...c.headers };
      if (c.body !== undefined && c.type !== undefined) headers['content-type'] = c.type;
      return {
        method: c.method,
        url: path + c.suffix + c.query,
        headers,
        payload: c.body === undefined ? undefined : text(c.body),
        extraTopLevel: path === '/health/ready' ? ['status', 'storage', 'metadata'] : [],
      };
    });
  };
  it('GET /health', healthRoute('GET /health', '/health'));
  it('GET /health/ready', healthRoute('GET /health/ready', '/health/ready'));

  // --- signed local-store URLs: a real URL, then its signature, query, key, headers or body changed

  type UrlEdit =
    | { op: 'flipSignature'; at: number }
    | { op: 'dropParam'; name: string }
    | { op: 'setParam'; name: string; value: string | Huge }
    | { op: 'addParam'; name: string; value: string }
    | {
        op: 'key';
        edit:
          | 'flip'
          | 'append'
          | 'junk'
          | 'upper'
          | 'double-slash'
          | 'trailing-slash'
          | 'long'
          | 'drop-segment';
        junk: string | Huge;
      }
    | { op: 'suffix'; value: string };
  const paramName = fc.constantFrom(
    'expires',
    'length',
    'max',
    'signature',
    'response-content-type',
  );
  const urlEdit: fc.Arbitrary<UrlEdit> = fc.oneof(
    fc.nat(60).map((at): UrlEdit => ({ op: 'flipSignature', at })),
    paramName.map((name): UrlEdit => ({ op: 'dropParam', name })),
    fc
      .tuple(
        paramName,
        fc.oneof(
          fc.constantFrom(
            '',
            'abc',
            '0',
            '-1',
            '1e30',
            '0x10',
            '99999999999999999999',
            '1.5',
            ' 1',
            '%zz',
            '%',
            'NaN',
            'Infinity',
          ),
          fc.string().map(encodeURIComponent),
          fc.constantFrom(...BAD_PERCENT),
          huge(100, 5000),
        ),
      )
      .map(([name, value]): UrlEdit => ({ op: 'setParam', name, value })),
    fc
      .tuple(
        fc.oneof(paramName, fc.constantFrom('x', '', 'X-Amz-Signature', 'signature[]')),
        fc.oneof(fc.string().map(encodeURIComponent), fc.constantFrom(...BAD_PERCENT)),
      )
      .map(([name, value]): UrlEdit => ({ op: 'addParam', name, value })),
    fc
      .tuple(
        fc.constantFrom(
          'flip',
          'append',
          'junk',
          'upper',
          'double-slash',
          'trailing-slash',
          'long',
          'drop-segment',
        ) as fc.Arbitrary<'flip'>,
        fc.oneof(
          fc.constantFrom(...BAD_PERCENT, '..', '.', '', '%2e%2e', 'a%2Fb'),
          fc.string().map(encodeURIComponent),
          huge(256, 6000),
        ),
      )
      .map(([edit, junk]): UrlEdit => ({ op: 'key', edit, junk })),
    fc
      .constantFrom('&', '&&', '&=', '&signature', '#x', '?', '?a=b')
      .map((value): UrlEdit => ({ op: 'suffix', value })),
  );

  function editUrl(signed: string, edits: readonly UrlEdit[]): string {
    const url = new URL(signed);
    let segments = url.pathname.slice(1).split('/');
    // Kept as text so that bad percent-encoding reaches the server untouched.
    let params = url.search
      .slice(1)
      .split('&')
      .filter(Boolean)
      .map((p) => {
        const eq = p.indexOf('=');
        return eq < 0
          ? ([p, undefined] as [string, string | undefined])
          : ([p.slice(0, eq), p.slice(eq + 1)] as [string, string | undefined]);
      });
    let suffix = '';
    for (const e of edits) {
      switch (e.op) {
        case 'flipSignature':
          params = params.map(([k, v]) =>
            k === 'signature' && v
              ? [
                  k,
                  v.slice(0, e.at % v.length) +
                    (v[e.at % v.length] === 'A' ? 'B' : 'A') +
                    v.slice((e.at % v.length) + 1),
                ]
              : [k, v],
          );
          break;
        case 'dropParam':
          params = params.filter(([k]) => k !== e.name);
          break;
        case 'setParam': {
          const at = params.findIndex(([k]) => k === e.name);
          if (at >= 0) params[at] = [e.name, text(e.value)];
          else params.push([e.name, text(e.value)]);
          break;
        }
        case 'addParam':
          params.push([e.name, e.value]);
          break;
        case 'suffix':
          suffix += e.value;
          break;
        case 'key': {
          const last = segments.length - 1;
          const leaf = segments[last] ?? '';
          if (e.edit === 'flip') segments[last] = (leaf[0] === 'a' ? 'b' : 'a') + leaf.slice(1);
          else if (e.edit === 'append') segments.push(text(e.junk));
          else if (e.edit === 'junk')
            segments[1 + (leaf.length % Math.max(1, last))] = text(e.junk);
          else if (e.edit === 'upper')
            segments = segments.map((s, i) => (i === 0 ? s : s.toUpperCase()));
          else if (e.edit === 'double-slash') segments.splice(2, 0, '');
          else if (e.edit === 'trailing-slash') segments.push('');
          else if (e.edit === 'long')
            segments[last] = new Huge(Math.max(256, text(e.junk).length), 'a').toString();
          else segments.splice(1, 1);
          break;
        }
      }
    }
    const query = params.map(([k, v]) => (v === undefined ? k : `${k}=${v}`)).join('&');
    return `/${segments.join('/')}${query ? `?${query}` : ''}${suffix}`;
  }

  type HeaderEdit = { op: 'drop'; name: string } | { op: 'set'; name: string; value: string };
  const signedHeader = fc.constantFrom(
    'Content-Type',
    'x-amz-server-side-encryption',
    'x-amz-checksum-sha256',
    'If-None-Match',
  );
  const headerEdit: fc.Arbitrary<HeaderEdit> = fc.oneof(
    signedHeader.map((name): HeaderEdit => ({ op: 'drop', name })),
    fc
      .tuple(
        fc.oneof(
          signedHeader,
          fc.constantFrom(
            'content-length',
            'range',
            'expect',
            'transfer-encoding',
            'content-encoding',
          ),
        ),
        headerValue,
      )
      .map(([name, value]): HeaderEdit => ({ op: 'set', name, value })),
  );

  function editHeaders(
    headers: Record<string, string>,
    edits: readonly HeaderEdit[],
  ): Record<string, string> {
    const out = { ...headers };
    for (const e of edits) {
      for (const k of Object.keys(out)) if (k.toLowerCase() === e.name.toLowerCase()) delete out[k];
      if (e.op === 'set') out[e.name] = e.value;
    }
    return out;
  }

  it('PUT /storage/{key} (signed upload URLs)', async () => {
    const bodyChoice = fc.oneof(
      {
        weight: 6,
        arbitrary: fc.constant<'exact' | 'other' | 'empty' | 'longer' | 'huge'>('exact'),
      },
      {
        weight: 1,
        arbitrary: fc.constantFrom<'exact' | 'other' | 'empty' | 'longer' | 'huge'>(
          'other',
          'empty',
          'longer',
          'huge',
        ),
      },
    );
    const arb = fc.record({
      format: formatArb,
      bindSize: fc.boolean(),
      bindChecksum: fc.boolean(),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 3000 }),
      other: fc.uint8Array({ minLength: 0, maxLength: 3000 }),
      big: fc.integer({ min: MAX_AUDIO + 1, max: MAX_AUDIO + 50_000 }).map((n) => new Bytes(n, 7)),
      urlEdits: fc.oneof(
        { weight: 1, arbitrary: fc.constant([]) },
        { weight: 3, arbitrary: fc.array(urlEdit, { minLength: 1, maxLength: 3 }) },
      ),
      headerEdits: fc.oneof(
        { weight: 2, arbitrary: fc.constant([]) },
        { weight: 1, arbitrary: fc.array(headerEdit, { minLength: 1, maxLength: 2 }) },
      ),
      body: bodyChoice,
      extra: oddHeaders,
      copies: copiesArb,
    });
    await fuzz('PUT /storage/{key}', arb, async (c) => {
      const bytes = Buffer.from(c.bytes);
      const ticket = await issue({
        file_extension: c.format[0],
        content_type: c.format[1],
        ...(c.bindSize ? { file_size: bytes.length } : {}),
        ...(c.bindChecksum ? { checksum_sha256: sha256(bytes) } : {}),
      });
      const payload =
        c.body === 'exact'
          ? bytes
          : c.body === 'other'
            ? Buffer.from(c.other)
            : c.body === 'empty'
              ? Buffer.alloc(0)
              : c.body === 'longer'
                ? Buffer.concat([bytes, Buffer.from(c.other), Buffer.from('x')])
                : c.big.buffer();
      return {
        method: 'PUT',
        url: editUrl(ticket.upload_url, c.urlEdits),
        headers: { ...c.extra, ...editHeaders(ticket.headers, c.headerEdits) },
        payload,
        copies: c.copies,
      };
    });
  });

  it('GET /storage/{key} (signed download URLs)', async () => {
    const arb = fc.record({
      base: fc.constantFrom('ready', 'ready', 'ready', 'gone', 'upload-url'),
      method: fc.constantFrom('GET', 'GET', 'GET', 'HEAD'),
      urlEdits: fc.oneof(
        { weight: 1, arbitrary: fc.constant([]) },
        { weight: 3, arbitrary: fc.array(urlEdit, { minLength: 1, maxLength: 3 }) },
      ),
      headers: fc.oneof(oddHeaders, fc.record({ range: headerValue })),
    });
    await fuzz('GET /storage/{key}', arb, async (c) => {
      const base =
        c.base === 'ready'
          ? readyEcho.audioUrl
          : c.base === 'gone'
            ? goneAudioUrl
            : readyEcho.uploadUrl;
      return { method: c.method, url: editUrl(base, c.urlEdits), headers: c.headers };
    });
  });

  it('unknown routes and methods', async () => {
    const KNOWN = [
      '/echoes',
      '/echoes/upload-url',
      '/echoes/init-upload',
      '/echoes/x',
      '/health',
      '/health/ready',
      '/dev/token',
      '/storage/x',
      '/storage',
      '/docs',
      '/docs/json',
      '/docs/static/index.html',
      '/',
      '/index.html',
    ];
    const segment = fc.oneof(
      fc.string().map(encodeURIComponent),
      fc.stringMatching(/^[a-z.]{1,10}$/),
      fc.constantFrom(
        ...BAD_PERCENT,
        '..',
        '.',
        '',
        '%2e%2e',
        'echoes',
        'storage',
        'docs',
        'health',
      ),
      fc
        .tuple(fc.integer({ min: 256, max: 4000 }), fc.constantFrom('a', 'é', '%zz', '%', '-'))
        .map(([n, unit]) => new Huge(n, unit)),
    );
    const arb = fc.record({
      method: fc.constantFrom(...METHODS.filter((m) => m !== 'CONNECT')),
      path: fc.oneof(
        fc.constantFrom(...KNOWN),
        fc.array(segment, { minLength: 1, maxLength: 5 }).map((s) => `/${s.map(text).join('/')}`),
        fc.tuple(fc.constantFrom(...KNOWN), segment).map(([k, s]) => `${k}/${text(s)}`),
      ),
      query: fc.oneof(
        { weight: 3, arbitrary: fc.constant('') },
        { weight: 1, arbitrary: queryString },
      ),
      auth: authArb,
      headers: oddHeaders,
      body: fc.option(badJsonText, { freq: 3, nil: undefined }),
      type: contentTypeArb,
    });
    await fuzz('unknown routes and methods', arb, async (c) => {
      const headers: Record<string, string> = { ...authHeaders(c.auth), ...c.headers };
      if (c.type !== undefined) headers['content-type'] = c.type;
      // Wrong methods on known paths, and unknown paths: a body may come along; GET and HEAD never carry one.
      const payload =
        c.body === undefined || c.method === 'GET' || c.method === 'HEAD'
          ? undefined
          : text(c.body);
      return { method: c.method, url: c.path + c.query, headers, payload };
    });
  });

  // --- over a real socket: what inject cannot say

  it('raw requests over a real socket', async () => {
    const token = tokens.alice;
    const method = fc.oneof(
      {
        weight: 6,
        arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH'),
      },
      {
        weight: 2,
        arbitrary: fc.constantFrom(
          'CONNECT',
          'TRACE',
          'PROPFIND',
          'PURGE',
          'M-SEARCH',
          'QUERY',
          'FOO',
          'get',
          'G ET',
          'GET\t',
          '',
          'POSTX',
          'DELETE\u0000',
        ),
      },
      { weight: 1, arbitrary: fc.stringMatching(/^[A-Z]{1,10}$/) },
    );
    const target = fc.oneof(
      {
        weight: 4,
        arbitrary: fc.constantFrom(
          '/health',
          '/echoes',
          '/echoes/upload-url',
          '/echoes/x',
          '/storage/a/b?signature=x',
          '/dev/token',
          '/',
        ),
      },
      {
        weight: 3,
        arbitrary: fc
          .tuple(
            fc.constantFrom(
              '/echoes/',
              '/storage/alice/',
              '/',
              '/echoes?cursor=',
              '/health?x=',
              '/docs/static/',
            ),
            fc.constantFrom(...BAD_PERCENT),
          )
          .map(([a, b]) => a + b),
      },
      {
        weight: 1,
        arbitrary: fc.constantFrom(
          '*',
          'health',
          'http://evil.example/health',
          '//echoes',
          '/ech oes',
          '/echoes\u00e9',
          '/\u0000',
          '/echoes#x',
          '/echoes?\u00ff=1',
        ),
      },
      {
        weight: 2,
        arbitrary: fc.integer({ min: 3000, max: 24_000 }).map((n) => `/echoes/${'a'.repeat(n)}`),
      },
      // A fresh signed upload URL: its PUT is streamed to a temporary file, cut short or not.
      { weight: 3, arbitrary: fc.constant('SIGNED-UPLOAD') },
    );
    const oversized = fc.oneof(
      fc.integer({ min: 17 * 1024, max: 24 * 1024 }).map((n) => `X-Big: ${'a'.repeat(n)}\r\n`),
      fc
        .integer({ min: 1200, max: 2500 })
        .map((n) => Array.from({ length: n }, (_, i) => `X-H${i}: 0123456789\r\n`).join('')),
      fc
        .integer({ min: 17 * 1024, max: 24 * 1024 })
        .map((n) => `Authorization: Bearer ${'a'.repeat(n)}\r\n`),
    );
    const oddLine = fc.constantFrom(
      'NoColonHere\r\n',
      'Bad Name: x\r\n',
      'X-A: a\u0000b\r\n',
      ' folded: x\r\n',
      'X-A: 1\r\n continued\r\n',
      ': empty-name\r\n',
      'Content-Length: abc\r\n',
      'Content-Length: -1\r\n',
      'Content-Length: 1\r\nContent-Length: 2\r\n',
      'Transfer-Encoding: chunked\r\nContent-Length: 3\r\n',
      'Transfer-Encoding: gzip\r\n',
      'Host: a\r\nHost: b\r\n',
      'Expect: 100-continue\r\n',
      'Expect: nonsense\r\n',
      'X-\u00e9: 1\r\n',
      'Upgrade: h2c\r\nConnection: Upgrade\r\n',
    );
    const arb = fc.record({
      method,
      target,
      version: fc.constantFrom(
        'HTTP/1.1',
        'HTTP/1.1',
        'HTTP/1.1',
        'HTTP/1.1',
        'HTTP/1.0',
        'HTTP/2.0',
        'HTTP/1',
        'HTTP/1.x',
        '',
        'http/1.1',
        'HTTP/1.1 extra',
      ),
      host: fc.constantFrom(
        'Host: 127.0.0.1\r\n',
        'Host: 127.0.0.1\r\n',
        'Host: 127.0.0.1\r\n',
        '',
        'Host: \r\n',
        'Host: a b\r\n',
      ),
      auth: fc.boolean(),
      extra: fc.oneof(
        { weight: 3, arbitrary: fc.constant('') },
        { weight: 2, arbitrary: oddLine },
        { weight: 2, arbitrary: oversized },
      ),
      body: fc.oneof(
        { weight: 3, arbitrary: fc.constant({ kind: 'none' as const }) },
        { weight: 2, arbitrary: fc.string().map((s) => ({ kind: 'exact' as const, text: s })) },
        {
          weight: 1,
          arbitrary: fc
            .tuple(fc.string(), fc.integer({ min: 1, max: 1000 }))
            .map(([s, more]) => ({ kind: 'short' as const, text: s, more })),
        },
        {
          weight: 1,
          arbitrary: fc
            .constantFrom(
              '5\r\nhello\r\n0\r\n\r\n',
              'zz\r\n{}\r\n0\r\n\r\n',
              '5\r\nhel',
              'ffffffffffffffff\r\n',
              '0\r\n\r\n',
            )
            .map((t) => ({ kind: 'chunked' as const, text: t })),
        },
      ),
    });
    await inParallel(fc.sample(arb, { seed: SEED, numRuns: RAW_RUNS }), async (c, index) => {
      let target = c.target;
      let type = 'Content-Type: application/json\r\n';
      if (target === 'SIGNED-UPLOAD') {
        const ticket = await issue();
        const url = new URL(ticket.upload_url);
        target = url.pathname + url.search;
        type = Object.entries(ticket.headers)
          .map(([k, v]) => `${k}: ${v}\r\n`)
          .join('');
      }
      let head =
        `${c.method} ${target} ${c.version}`.replace(/ $/, '') +
        '\r\n' +
        c.host +
        (c.auth ? `Authorization: Bearer ${token}\r\n` : '') +
        c.extra;
      let body = '';
      let complete = true;
      if (c.body.kind === 'exact') {
        head += `${type}Content-Length: ${Buffer.byteLength(c.body.text)}\r\n`;
        body = c.body.text;
      } else if (c.body.kind === 'short') {
        head += `${type}Content-Length: ${Buffer.byteLength(c.body.text) + c.body.more}\r\n`;
        body = c.body.text;
        complete = false;
      } else if (c.body.kind === 'chunked') {
        head += `${type}Transfer-Encoding: chunked\r\n`;
        body = c.body.text;
        complete = !/hel$|ffff/.test(c.body.text);
      }
      const bytes = Buffer.concat([Buffer.from(`${head}\r\n`, 'latin1'), Buffer.from(body)]);
      const result = await rawExchange(port, bytes, {
        waitMs: 3000,
        halfClose: !complete,
        head: c.method === 'HEAD',
      });
      const req: FuzzRequest = {
        method: c.method,
        url: target,
        headers: {
          raw: `${head.slice(0, 400)}${head.length > 400 ? `… (${head.length} chars)` : ''}`,
        },
        payload: body,
      };
      const family = 'raw socket';
      if (!result.response) {
        // Only a request the server could not read to its end may go unanswered.
        if (complete)
          record(
            family,
            `no answer${result.timedOut ? ' within 3 s' : ', the connection was closed'}: ${JSON.stringify(result.raw.slice(0, 200))}`,
            req,
            c,
            index,
          );
        else count(family);
        return;
      }
      const problem = problemWith(req, {
        status: result.response.status,
        headers: result.response.headers,
        body: result.response.body,
      });
      if (problem) record(family, problem, req, c, index);
      else count(family);
    });
    expectNoViolations('raw socket');
  });

  it('still works afterwards, and keeps nothing it should not', async () => {
    const api = apiClient(srv.url, tokens.alice);
    const bytes = fixture('wav');
    const ticket = await api.call<Ticket>('POST', '/echoes/upload-url', {
      file_extension: 'wav',
      content_type: 'audio/wav',
      file_size: bytes.length,
      checksum_sha256: sha256(bytes),
    });
    expect(ticket.status, JSON.stringify(ticket.body)).toBe(200);
    issuedKeys.add(ticket.body.s3_key);
    expect((await putBytes(ticket.body, bytes)).status).toBe(200);
    const created = await api.call<{ audio_url: string }>('POST', '/echoes', {
      echo_id: ticket.body.echo_id,
      caption: 'after the fuzz',
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const audio = await fetch(created.body.audio_url);
    expect(audio.status).toBe(200);
    expect(
      createHash('sha256')
        .update(Buffer.from(await audio.arrayBuffer()))
        .digest('base64'),
    ).toBe(sha256(bytes));
    expect((await api.call('GET', `/echoes/${ticket.body.echo_id}`)).status).toBe(200);
    expect((await api.call('DELETE', `/echoes/${ticket.body.echo_id}`)).status).toBe(204);

    // Uploads cut short by the raw-socket cases finish on the server after their client left.
    const tmp = join(srv.dataDir, 'tmp');
    const leftovers = await waitFor(
      () => (existsSync(tmp) ? readdirSync(tmp) : []),
      (files) => files.length === 0,
    );
    expect(leftovers, 'files left in DATA_DIR/tmp').toEqual([]);

    // Every stored object comes from a URL this test was given, within the size limit, with its content type beside it.
    const objects = listFiles(join(srv.dataDir, 'objects'));
    const strays = objects.filter((k) => !issuedKeys.has(k));
    expect(strays, 'objects no signed URL was issued for').toEqual([]);
    const oversized = objects.filter(
      (k) => statSync(join(srv.dataDir, 'objects', ...k.split('/'))).size > MAX_AUDIO,
    );
    expect(oversized, 'objects over MAX_AUDIO_FILE_SIZE').toEqual([]);
    expect(listFiles(join(srv.dataDir, 'meta')).sort()).toEqual([...objects].sort());

    for (const family of [
      'POST /echoes/upload-url',
      'POST /echoes/init-upload',
      'POST /echoes',
      'GET /echoes',
      'GET /echoes/{id}',
      'DELETE /echoes/{id}',
      'GET /health',
      'GET /health/ready',
      'POST /dev/token',
      'PUT /storage/{key}',
      'GET /storage/{key}',
      'unknown routes and methods',
    ]) {
      expect(counts.get(family) ?? 0, `requests sent for ${family}`).toBeGreaterThanOrEqual(
        Math.min(RUNS, 2000),
      );
    }
    expect(counts.get('raw socket') ?? 0).toBeGreaterThanOrEqual(Math.min(RAW_RUNS, 300));
  });
});

/** Runs `task` over the values, `width` at a time. */
async function inParallel<T>(
  values: readonly T[],
  task: (value: T, index: number) => Promise<void>,
  width = CONCURRENCY,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < values.length) {
      const index = next++;
      await task(values[index] as T, index);
    }
  };
  await Promise.all(Array.from({ length: width }, worker));
}

/** Long text cut for a report, saying how long it was. */
function short(value: string, max: number): string {
  return value.length <= max ? value : `${value.slice(0, max)}… (${value.length} chars)`;
}

function listFiles(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(root, join(e.parentPath, e.name)).split(sep).join('/'));
}

async function waitFor<T>(read: () => T, done: (value: T) => boolean, limitMs = 5000): Promise<T> {
  const until = Date.now() + limitMs;
  let value = read();
  while (!done(value) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 50));
    value = read();
  }
  return value;
}
