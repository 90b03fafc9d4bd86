/**
 * Issue 22, defect 7: a failed backend's 503 (and GET /health/ready) names the kind of backend
 * that failed (storage, metadata), never its bucket, table, endpoint, path or own error text;
 * those go to the log under the request id, where an operator can act on them.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, fixture, putBytes, type Ticket } from '../support/api.ts';
import { backends } from '../backends/index.ts';
import { contractError } from '../support/error-shape.ts';
import { startTestServer, type LogEntry, type TestServer } from '../support/server.ts';

interface Answer {
  readonly status: number;
  readonly retryAfter: string | null;
  readonly text: string;
}

async function ask(url: string, init: RequestInit = {}): Promise<Answer> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(20_000) });
  return { status: res.status, retryAfter: res.headers.get('retry-after'), text: await res.text() };
}

/** The log lines of one request at warn level or above, as one text. */
function loggedFor(srv: TestServer, reqId: string): string {
  return srv
    .logs()
    .filter((e: LogEntry) => e.reqId === reqId && e.level >= 40)
    .map((e) => JSON.stringify(e))
    .join('\n');
}

/** A 503 in the contract's shape with Retry-After, naming the role, and none of `secrets`. */
function expectPublic503(answer: Answer, role: RegExp, secrets: readonly string[]): void {
  expect(answer.status, answer.text).toBe(503);
  expect(answer.retryAfter).toMatch(/^[1-9]\d*$/);
  expect(answer.text).toMatch(role);
  for (const secret of secrets)
    expect(answer.text, `the answer shows "${secret}"`).not.toContain(secret);
}

/** The database a PostgreSQL URL names. */
const databaseName = (url: string): string => new URL(url).pathname.slice(1);

for (const backend of backends()) {
  describe.runIf(backend.available)(`public answers of a failed backend on ${backend.name}`, () => {
    let srv: TestServer;
    let env: Record<string, string>;
    const aws = backend.name.startsWith('S3');
    beforeAll(async () => {
      env = await backend.env();
      srv = await startTestServer(env, { logs: true });
    }, 60_000);
    afterAll(async () => {
      await srv?.close();
      await backend.stop();
    });

    /** What no public answer may show on this backend: names, places and the backends' own words. */
    const secrets = (): string[] =>
      aws
        ? [
            env.S3_BUCKET_NAME ?? '?',
            env.DYNAMODB_TABLE_NAME ?? '?',
            new URL(env.S3_ENDPOINT ?? 'http://x').host,
            'ECONNREFUSED',
            'dynamodb',
          ]
        : [
            srv.dataDir,
            'ENOTDIR',
            'sqlite',
            'DATA_DIR',
            'is closed',
            ...(env.DATABASE_URL ? [databaseName(env.DATABASE_URL), 'postgres', 'pool'] : []),
          ];

    it.runIf(!aws)(
      "a failed erase names neither the keys nor the disk's error; the log has both under the request id",
      async () => {
        const alice = apiClient(srv.url, await srv.token('leak-alice'));
        const bytes = fixture('wav');
        const ticket = (
          await alice.call<Ticket>('POST', '/echoes/upload-url', {
            file_extension: 'wav',
            content_type: 'audio/wav',
            file_size: bytes.length,
          })
        ).body;
        expect((await putBytes(ticket, bytes)).status).toBe(200);
        // Its metadata folder is a file now: deleting the object's metadata fails with ENOTDIR.
        const metaDir = join(srv.dataDir, 'meta', 'leak-alice');
        rmSync(metaDir, { recursive: true, force: true });
        writeFileSync(metaDir, '');
        try {
          const answer = await ask(`${srv.url}/me`, {
            method: 'DELETE',
            headers: {
              authorization: `Bearer ${await srv.token('leak-alice')}`,
              'x-request-id': 'trace-erase-1',
            },
          });
          expectPublic503(answer, /storage/, [...secrets(), ticket.s3_key, ticket.echo_id]);
          expect(contractError(answer.text)).toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
          expect(contractError(answer.text).message).toContain('leak-alice');
          const logged = loggedFor(srv, 'trace-erase-1');
          expect(logged).toContain(ticket.s3_key);
          expect(logged).toContain('ENOTDIR');
        } finally {
          rmSync(metaDir, { force: true });
          mkdirSync(metaDir);
        }
      },
    );

    it('with storage and metadata down, 503s and /health/ready say which kind failed and nothing else; the log says the rest', async () => {
      const token = await srv.token('leak-bob');
      const bob = apiClient(srv.url, token);
      const ticket = (
        await bob.call<Ticket>('POST', '/echoes/upload-url', {
          file_extension: 'wav',
          content_type: 'audio/wav',
          file_size: fixture('wav').length,
        })
      ).body;
      if (aws) {
        await backend.stop();
      } else {
        // tmp/ is a file (uploads and the store's check fail with ENOTDIR); the database is closed.
        const tmp = join(srv.dataDir, 'tmp');
        rmSync(tmp, { recursive: true, force: true });
        writeFileSync(tmp, '');
        await srv.server.composition.repo.close();
      }

      const health = await ask(`${srv.url}/health`);
      expect(health.status).toBe(200);
      for (const secret of secrets().filter(
        (x) => x !== 'dynamodb' && x !== 'sqlite' && x !== 'postgres',
      ))
        expect(health.text).not.toContain(secret);

      const ready = await ask(`${srv.url}/health/ready`, {
        headers: { 'x-request-id': 'trace-ready-1' },
      });
      expectPublic503(ready, /storage/, secrets());
      expect(JSON.parse(ready.text)).toMatchObject({
        status: 'unavailable',
        storage: 'unavailable',
        metadata: 'unavailable',
        error: { code: 'SERVICE_UNAVAILABLE' },
      });
      const readyLog = loggedFor(srv, 'trace-ready-1');
      if (aws) {
        expect(readyLog).toContain(env.S3_BUCKET_NAME);
        expect(readyLog).toContain(new URL(env.S3_ENDPOINT ?? '').host);
      } else {
        expect(readyLog).toContain(join(srv.dataDir, 'tmp'));
        expect(readyLog).toContain(
          env.DATABASE_URL ? databaseName(env.DATABASE_URL) : join(srv.dataDir, 'echoes.sqlite'),
        );
      }

      const auth = { authorization: `Bearer ${token}` };
      const answers: [string, Answer][] = [
        [
          'trace-list-1',
          await ask(`${srv.url}/echoes`, { headers: { ...auth, 'x-request-id': 'trace-list-1' } }),
        ],
        [
          'trace-usage-1',
          await ask(`${srv.url}/me/usage`, {
            headers: { ...auth, 'x-request-id': 'trace-usage-1' },
          }),
        ],
        [
          'trace-erase-2',
          await ask(`${srv.url}/me`, {
            method: 'DELETE',
            headers: { ...auth, 'x-request-id': 'trace-erase-2' },
          }),
        ],
        [
          'trace-make-1',
          await ask(`${srv.url}/echoes`, {
            method: 'POST',
            headers: {
              ...auth,
              'content-type': 'application/json',
              'x-request-id': 'trace-make-1',
            },
            body: JSON.stringify({ echo_id: ticket.echo_id }),
          }),
        ],
      ];
      if (!aws) {
        // The local store's own upload route is a public answer too.
        answers.push([
          'trace-put-1',
          await ask(ticket.upload_url, {
            method: 'PUT',
            headers: { ...ticket.headers, 'x-request-id': 'trace-put-1' },
            body: fixture('wav'),
          }),
        ]);
      }
      for (const [reqId, answer] of answers) {
        expectPublic503(answer, /storage|metadata/, secrets());
        expect(contractError(answer.text).code).toBe('SERVICE_UNAVAILABLE');
        const logged = loggedFor(srv, reqId);
        expect(logged, `${reqId} is not logged`).toMatch(/backend unavailable/);
        if (aws)
          expect(logged).toMatch(new RegExp(`${env.S3_BUCKET_NAME}|${env.DYNAMODB_TABLE_NAME}`));
        else
          expect(logged).toMatch(
            new RegExp(
              `ENOTDIR|${env.DATABASE_URL ? databaseName(env.DATABASE_URL) : 'echoes\\.sqlite'}`,
            ),
          );
      }
    });
  });
}
