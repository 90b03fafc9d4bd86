import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signDevToken } from '../../src/auth/tokens.ts';
import type { IntegrityResult } from '../../src/services/lifecycle/integrity.ts';
import type { Echo, ErrorBody } from '../../src/wire/echoes-api.ts';
import { freshDatabase, requirePostgres } from '../backends/postgres.ts';
import {
  awsEnv,
  freshBucket,
  motoForFile,
  requireMoto,
  s3Client,
  type MotoServer,
} from '../backends/s3-moto.ts';
import { apiClient, fixture, FORMATS, putBytes, type Ticket } from '../support/api.ts';
import { runCli, serveCli, type CliServer } from '../support/cli.ts';
import { startHoldingProxy, type HoldingProxy } from '../support/holding-proxy.ts';

/*
 * Issue 25's acceptance with real processes: two `echoes-storage serve` on one PostgreSQL
 * database and one bucket (moto), reached over their sockets, as a load balancer would. Dev
 * tokens signed with the one DATA_DIR's key work on both (the echoes live in PostgreSQL and S3).
 */

const MiB = 1024 * 1024;
const QUOTA = 10 * MiB;
const LIMIT = 20;
const WINDOW_MS = 60_000;

const ready =
  requirePostgres('many instances on PostgreSQL') && requireMoto('many instances on S3');

type Client = ReturnType<typeof apiClient>;

/** A real WAV of exactly `size` bytes: 16-bit stereo 44.1 kHz PCM, a 440 Hz tone. */
function toneWav(size: number): Buffer {
  const data = size - 44;
  if (data <= 0 || data % 4 !== 0) throw new Error(`no 16-bit stereo WAV is ${size} bytes`);
  const wav = Buffer.alloc(size);
  wav.write('RIFF', 0, 'ascii');
  wav.writeUInt32LE(size - 8, 4);
  wav.write('WAVEfmt ', 8, 'ascii');
  wav.writeUInt32LE(16, 16);
  wav.writeUInt16LE(1, 20); // PCM
  wav.writeUInt16LE(2, 22); // channels
  wav.writeUInt32LE(44_100, 24);
  wav.writeUInt32LE(44_100 * 4, 28);
  wav.writeUInt16LE(4, 32);
  wav.writeUInt16LE(16, 34);
  wav.write('data', 36, 'ascii');
  wav.writeUInt32LE(data, 40);
  for (let i = 0; i < data / 4; i++) {
    const s = Math.round(Math.sin((2 * Math.PI * 440 * i) / 44_100) * 8000);
    wav.writeInt16LE(s, 44 + i * 4);
    wav.writeInt16LE(s, 46 + i * 4);
  }
  return wav;
}

/**
 * The shared count uses fixed windows (aligned on the minute): a run that straddles a window's
 * end would start counting again half-way. Starts the run in a window with time to spare.
 */
async function awayFromWindowEnd(spareMs = 20_000): Promise<void> {
  const left = WINDOW_MS - (Date.now() % WINDOW_MS);
  if (left < spareMs) await sleep(left + 50);
}

async function stopServe(srv: CliServer | undefined): Promise<void> {
  if (!srv || srv.child.exitCode !== null || srv.child.signalCode !== null) return;
  srv.child.kill('SIGTERM');
  await srv.exited;
}

/** One moto_server for the file; each suite has a bucket and a database of its own. */
const moto = motoForFile();

describe.runIf(ready)('two `serve` processes on one PostgreSQL and one bucket (moto)', () => {
  let motoServer: MotoServer;
  let dataDir: string;
  let env: Record<string, string>;
  let bucket: string;
  /** Each process reaches S3 through a proxy of its own that can hold its calls (never the PUTs). */
  const holding = [false, false];
  let proxies: HoldingProxy[] = [];
  let servers: CliServer[] = [];

  const token = (user: string): Promise<string> => signDevToken(dataDir, user);
  const clients = async (user: string): Promise<[Client, Client]> => {
    const t = await token(user);
    return [apiClient(servers[0]?.url ?? '', t), apiClient(servers[1]?.url ?? '', t)];
  };

  beforeAll(async () => {
    motoServer = await moto();
    const [b, databaseUrl] = await Promise.all([freshBucket(motoServer.endpoint), freshDatabase()]);
    bucket = b;
    dataDir = mkdtempSync(join(tmpdir(), 'echoes-many-'));
    const {
      DYNAMODB_TABLE_NAME: _t,
      DYNAMODB_ENDPOINT: _e,
      ...s3
    } = awsEnv(motoServer.endpoint, bucket, 'unused');
    env = {
      ...s3,
      METADATA_BACKEND: 'postgres',
      DATABASE_URL: databaseUrl,
      DATA_DIR: dataDir,
      USER_QUOTA_BYTES: String(QUOTA),
      // Twenty uploads of one user at once, ten per process: none is refused for the decode queue.
      AUDIO_DECODE_QUEUE_PER_USER: '50',
    };
    proxies = await Promise.all(
      [0, 1].map((i) =>
        startHoldingProxy(
          motoServer.endpoint,
          (req) => holding[i] === true && req.method !== 'PUT',
        ),
      ),
    );
    // Started at once: both migrate the new database (under the advisory lock).
    servers = await Promise.all(proxies.map((p) => serveCli({ ...env, S3_ENDPOINT: p.endpoint })));
  });
  afterAll(async () => {
    await Promise.all(servers.map(stopServe));
    for (const p of proxies) p.release();
    await Promise.all(proxies.map((p) => p.stop()));
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('50 concurrent 4 MB upload-url requests over both against a 10 MB quota reserve 8 MB: two tickets', async () => {
    const [a, b] = await clients('quota-user');
    const body = { file_extension: 'wav', content_type: 'audio/wav', file_size: 4 * MiB };
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        (i % 2 === 0 ? a : b).call<Ticket & ErrorBody>('POST', '/echoes/upload-url', body),
      ),
    );
    const granted = answers.filter((r) => r.status === 200);
    expect(granted).toHaveLength(2);
    const refused = answers.filter((r) => r.status !== 200);
    expect(refused.map((r) => r.status)).toEqual(Array(48).fill(403));
    expect(new Set(refused.map((r) => r.body.error.code))).toEqual(new Set(['QUOTA_EXCEEDED']));
    for (const client of [a, b]) {
      const usage = await client.call<{ bytes_reserved: number; pending_uploads: number }>(
        'GET',
        '/me/usage',
      );
      expect(usage.body.bytes_reserved).toBeLessThanOrEqual(QUOTA);
      expect(usage.body).toMatchObject({ bytes_reserved: 8 * MiB, pending_uploads: 2 });
    }

    // The two tickets carry real 4 MB of audio, each made an echo through the other process.
    const wav = toneWav(4 * MiB);
    for (const [i, ticket] of granted.entries()) {
      expect((await putBytes(ticket.body, wav)).status).toBe(200);
      const made = await (i % 2 === 0 ? b : a).call<Echo>('POST', '/echoes', {
        echo_id: ticket.body.echo_id,
      });
      expect(made.status, JSON.stringify(made.body)).toBe(201);
      expect(made.body.file_size).toBe(4 * MiB);
    }
    for (const client of [a, b]) {
      const usage = await client.call('GET', '/me/usage');
      expect(usage.body).toMatchObject({
        echoes: 2,
        bytes_used: 8 * MiB,
        bytes_reserved: 0,
        pending_uploads: 0,
      });
      const more = await client.call<ErrorBody>('POST', '/echoes/upload-url', body);
      expect(more.status).toBe(403);
      expect(more.body.error.code).toBe('QUOTA_EXCEEDED');
    }
  });

  it('an echo made through one process is listed, played and deleted through the other', async () => {
    const [a, b] = await clients('crossing-user');
    const bytes = fixture('mp3');
    for (const [issuer, other] of [
      [a, b],
      [b, a],
    ] as const) {
      // The ticket from one process, the echo made through the other.
      const ticket = await issuer.call<Ticket>('POST', '/echoes/upload-url', {
        file_extension: 'mp3',
        content_type: 'audio/mpeg',
        file_size: bytes.length,
      });
      expect(ticket.status).toBe(200);
      expect((await putBytes(ticket.body, bytes)).status).toBe(200);
      const id = ticket.body.echo_id;
      expect((await other.call('POST', '/echoes', { echo_id: id })).status).toBe(201);

      const listed = await issuer.call<{ echoes: Echo[] }>('GET', '/echoes');
      expect(listed.body.echoes.map((e) => e.echo_id)).toContain(id);
      const got = await issuer.call<Echo>('GET', `/echoes/${id}`);
      expect(got.status).toBe(200);
      const played = await fetch(got.body.audio_url);
      expect(played.status).toBe(200);
      expect(Buffer.from(await played.arrayBuffer()).equals(bytes)).toBe(true);

      expect((await other.call('DELETE', `/echoes/${id}`)).status).toBe(204);
      const gone = await issuer.call<ErrorBody>('GET', `/echoes/${id}`);
      expect(gone.status).toBe(404);
      expect(gone.body.error.code).toBe('ECHO_NOT_FOUND');
      const after = await issuer.call<{ echoes: Echo[] }>('GET', '/echoes');
      expect(after.body.echoes.map((e) => e.echo_id)).not.toContain(id);
      const s3 = s3Client(motoServer.endpoint);
      try {
        await expect(
          s3.send(new HeadObjectCommand({ Bucket: bucket, Key: ticket.body.s3_key })),
        ).rejects.toMatchObject({ name: 'NotFound' });
      } finally {
        s3.destroy();
      }
    }
    expect((await a.call('GET', '/me/usage')).body).toMatchObject({
      echoes: 0,
      bytes_used: 0,
      bytes_reserved: 0,
      pending_uploads: 0,
    });
  });

  it('kill -9 of one process in the middle of 20 uploads loses no acknowledged echo; verify finds nothing inconsistent', async () => {
    const user = 'survivor-user';
    const [a, b] = await clients(user);
    const through = [a, b];
    const uploads = Array.from({ length: 20 }, (_, i) => {
      const format = FORMATS[i % FORMATS.length] ?? FORMATS[0];
      return { i, via: i % 2, format, bytes: fixture(format.ext) };
    });
    type Upload = (typeof uploads)[number];
    /** upload-url, PUT, POST /echoes, all through one process; the ticket, and whether the echo was acknowledged. */
    const run = async (u: Upload): Promise<{ ticket?: Ticket; acknowledged: boolean }> => {
      const client = through[u.via] as Client;
      let ticket: Ticket | undefined;
      try {
        const issued = await client.call<Ticket>('POST', '/echoes/upload-url', {
          file_extension: u.format.ext,
          content_type: u.format.type,
          file_size: u.bytes.length,
        });
        if (issued.status !== 200) return { acknowledged: false };
        ticket = issued.body;
        if ((await putBytes(ticket, u.bytes)).status !== 200)
          return { ticket, acknowledged: false };
        const made = await client.call('POST', '/echoes', { echo_id: ticket.echo_id });
        return { ticket, acknowledged: made.status === 201 || made.status === 200 };
      } catch {
        // The connection to the killed process was refused or cut: no answer, no acknowledgement.
        return { ticket, acknowledged: false };
      }
    };

    // The first ten, five through each process, run to the end.
    const first = await Promise.all(uploads.slice(0, 10).map(run));
    // The last ten start with every S3 call of both processes held (the PUTs go through): each
    // POST /echoes waits on its object's HEAD, in the middle of its work.
    holding[0] = true;
    holding[1] = true;
    const last = uploads.slice(10).map(run);
    await Promise.all([proxies[0]?.waitForHeld(5), proxies[1]?.waitForHeld(5)]);
    const victim = servers[1] as CliServer;
    victim.child.kill('SIGKILL');
    await victim.exited;
    expect(victim.child.signalCode).toBe('SIGKILL');
    await proxies[1]?.stop();
    // The survivor carries on with the work it had in hand.
    holding[0] = false;
    proxies[0]?.release();
    const outcomes = [...first, ...(await Promise.all(last))];
    const acknowledged = outcomes.flatMap((o, i) =>
      o.acknowledged && o.ticket ? [{ ticket: o.ticket, upload: uploads[i] as Upload }] : [],
    );
    // Everything before the kill and the survivor's five after it; none of the victim's last five.
    expect(outcomes.map((o) => o.acknowledged)).toEqual([
      ...Array(10).fill(true),
      ...Array.from({ length: 10 }, (_, i) => i % 2 === 0),
    ]);

    // Every acknowledged echo is listed and plays, through the survivor.
    const listed = await a.call<{ echoes: Echo[] }>('GET', '/echoes?limit=100');
    expect(listed.status).toBe(200);
    const ids = listed.body.echoes.map((e) => e.echo_id);
    for (const { ticket, upload } of acknowledged) {
      expect(ids).toContain(ticket.echo_id);
      const got = await a.call<Echo>('GET', `/echoes/${ticket.echo_id}`);
      expect(got.status).toBe(200);
      const played = await fetch(got.body.audio_url);
      expect(played.status).toBe(200);
      expect(Buffer.from(await played.arrayBuffer()).equals(upload.bytes)).toBe(true);
    }

    // The uploads the kill cut off, their bytes in the bucket, finish through the survivor.
    const cut = outcomes.filter((o) => !o.acknowledged);
    expect(cut).toHaveLength(5);
    for (const o of cut) {
      const made = await a.call('POST', '/echoes', { echo_id: o.ticket?.echo_id });
      expect(made.status, JSON.stringify(made.body)).toBe(201);
    }
    expect((await a.call('GET', '/me/usage')).body).toMatchObject({
      echoes: 20,
      bytes_used: uploads.reduce((n, u) => n + u.bytes.length, 0),
      bytes_reserved: 0,
      pending_uploads: 0,
    });

    // The operator's check, as run after an incident: storage and metadata agree.
    const verify = await runCli(dataDir, ['verify', '--json'], env);
    expect(verify.code, verify.stderr).toBe(0);
    const result = JSON.parse(verify.stdout) as IntegrityResult;
    expect(result).toMatchObject({ inconsistencies: 0, remaining: 0 });
    expect(result.scannedRecords).toBeGreaterThanOrEqual(22);
  });
});

describe.runIf(ready)(
  `RATE_LIMIT_PER_MINUTE=${LIMIT} across two \`serve\` processes on one PostgreSQL`,
  () => {
    let dataDir: string;
    let servers: CliServer[] = [];
    beforeAll(async () => {
      const motoServer = await moto();
      const [bucket, databaseUrl] = await Promise.all([
        freshBucket(motoServer.endpoint),
        freshDatabase(),
      ]);
      dataDir = mkdtempSync(join(tmpdir(), 'echoes-many-limit-'));
      const {
        DYNAMODB_TABLE_NAME: _t,
        DYNAMODB_ENDPOINT: _e,
        ...s3
      } = awsEnv(motoServer.endpoint, bucket, 'unused');
      const env = {
        ...s3,
        METADATA_BACKEND: 'postgres',
        DATABASE_URL: databaseUrl,
        DATA_DIR: dataDir,
        RATE_LIMIT_PER_MINUTE: String(LIMIT),
      };
      servers = await Promise.all([serveCli(env), serveCli(env)]);
    });
    afterAll(async () => {
      await Promise.all(servers.map(stopServe));
      if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    });

    it('40 requests of one user alternating between the processes: exactly 20 are not 429', async () => {
      await awayFromWindowEnd();
      const auth = { authorization: `Bearer ${await signDevToken(dataDir, 'limited-user')}` };
      const statuses: number[] = [];
      for (let i = 0; i < 2 * LIMIT; i++) {
        const res = await fetch(`${servers[i % 2]?.url}/echoes`, { headers: auth });
        await res.arrayBuffer();
        statuses.push(res.status);
      }
      expect(statuses.filter((s) => s !== 429)).toHaveLength(LIMIT);
      expect(statuses).toEqual([...Array(LIMIT).fill(200), ...Array(LIMIT).fill(429)]);
    });

    it('40 requests of one user at once over both processes: exactly 20 are not 429', async () => {
      await awayFromWindowEnd();
      const auth = { authorization: `Bearer ${await signDevToken(dataDir, 'burst-user')}` };
      const statuses = await Promise.all(
        Array.from({ length: 2 * LIMIT }, async (_, i) => {
          const res = await fetch(`${servers[i % 2]?.url}/echoes`, { headers: auth });
          await res.arrayBuffer();
          return res.status;
        }),
      );
      expect(statuses.filter((s) => s !== 429)).toHaveLength(LIMIT);
      expect(statuses.filter((s) => s !== 429 && s !== 200)).toEqual([]);
    });
  },
);
